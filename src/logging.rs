//! Where log lines go and how they look: JSON or text for `serve`; for the
//! one-shot commands (`validate`, `explain`) the same plain `warning: ...`
//! lines on stderr as their own output, never JSON mixed in.
//!
//! `serve` logs from the threads that decide checks, so a log line must
//! never hold one up, nor fail it: see [`LogWriter`].

use std::fmt;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{LazyLock, OnceLock};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

use crate::cli::LogFormat;

/// `serve`'s logs: `format`, or JSON when stderr is not a terminal;
/// `RUST_LOG` filters (default info).
pub fn init_serve(format: Option<LogFormat>) {
    let format = format.unwrap_or_else(|| {
        if std::io::stderr().is_terminal() {
            LogFormat::Text
        } else {
            LogFormat::Json
        }
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter("info"))
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(LogWriter::for_stderr())
        // Its report of a failed write is an `eprintln!`, which panics when
        // stderr cannot be written: a full disk would end every check.
        .log_internal_errors(false);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// A one-shot command's events (a weak key's warning while loading) as
/// plain lines on stderr, like its own `warning:` lines; default: warnings.
pub fn init_plain() {
    tracing_subscriber::fmt()
        .with_env_filter(filter("warn"))
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .event_format(Plain)
        .init();
}

fn filter(default: &str) -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default))
}

/// `warning: message key=value ...`: no timestamp, no target.
struct Plain;

impl<S, N> FormatEvent<S, N> for Plain
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let level = match *event.metadata().level() {
            Level::ERROR => "error",
            Level::WARN => "warning",
            Level::INFO => "info",
            Level::DEBUG => "debug",
            Level::TRACE => "trace",
        };
        write!(writer, "{level}: ")?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        // Span fields, if any, after the event's own.
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<FormattedFields<N>>()
                    && !fields.is_empty()
                {
                    write!(writer, " {fields}")?;
                }
            }
        }
        writeln!(writer)
    }
}

/// How many bytes of log lines may wait for a stderr that does not take
/// them; past that, lines are dropped (and counted).
const QUEUE_LIMIT: usize = 4 << 20;

/// Log lines lost: stderr failed (a full disk, a closed pipe) or did not
/// take them (a pipe nobody reads) — `ingress_authz_log_lines_dropped_total`.
pub fn dropped_lines() -> &'static Counter {
    static DROPPED: LazyLock<Counter> = LazyLock::new(Counter::default);
    &DROPPED
}

/// `serve`'s log destination, stderr, written so that no line can stall or
/// fail the thread that logs it (a check's worker):
///
/// * a regular file is written in place, as before: a write there never
///   waits for a reader, so lines are on disk, in order, before the check
///   is answered; a failed write (a full disk) loses the line, nothing more;
/// * anything with a reader at the other end (a pipe, a socket, a
///   terminal) can block for as long as the reader does not read: lines go
///   through a queue to a thread of their own, which alone may block, and
///   are dropped once `QUEUE_LIMIT` (4 MiB) bytes wait.
///
/// Either way a lost line is counted in [`dropped_lines`]; formats are
/// unchanged (this only moves bytes).
pub struct LogWriter {
    queue: Option<&'static Queue>,
}

struct Queue {
    tx: mpsc::Sender<Vec<u8>>,
    /// Bytes sent and not yet written.
    queued: AtomicUsize,
}

/// The queue of `serve`'s writer, when stderr needs one.
static QUEUE: OnceLock<Queue> = OnceLock::new();

impl LogWriter {
    fn for_stderr() -> Self {
        if stderr_is_regular_file() {
            return Self { queue: None };
        }
        let (tx, rx) = mpsc::channel::<Vec<u8>>();
        let queue = QUEUE.get_or_init(|| Queue {
            tx,
            queued: AtomicUsize::new(0),
        });
        let spawned = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || write_queued(&rx, queue));
        match spawned {
            Ok(_) => Self { queue: Some(queue) },
            // No thread: lines are written in place, as with a file.
            Err(_) => Self { queue: None },
        }
    }

    fn write_line(&self, line: &[u8]) {
        let Some(queue) = self.queue else {
            if std::io::stderr().lock().write_all(line).is_err() {
                dropped_lines().inc();
            }
            return;
        };
        let queued = queue.queued.fetch_add(line.len(), Ordering::AcqRel);
        if queued + line.len() > QUEUE_LIMIT || queue.tx.send(line.to_vec()).is_err() {
            queue.queued.fetch_sub(line.len(), Ordering::AcqRel);
            dropped_lines().inc();
        }
    }
}

/// The log-writer thread: everything waiting, in one write.
fn write_queued(rx: &mpsc::Receiver<Vec<u8>>, queue: &Queue) {
    let mut stderr = std::io::stderr();
    while let Ok(first) = rx.recv() {
        let mut batch = first;
        let mut lines = 1;
        while batch.len() < 64 * 1024 {
            match rx.try_recv() {
                Ok(more) => {
                    batch.extend_from_slice(&more);
                    lines += 1;
                }
                Err(_) => break,
            }
        }
        if stderr.write_all(&batch).is_err() {
            dropped_lines().inc_by(lines);
        }
        queue.queued.fetch_sub(batch.len(), Ordering::AcqRel);
    }
}

/// Waits (up to `timeout`) until the queued log lines are written: before
/// `serve` exits, so its last lines are not lost.
pub fn flush(timeout: Duration) {
    const POLL: Duration = Duration::from_millis(5);
    let Some(queue) = QUEUE.get() else { return };
    for _ in 0..timeout.as_millis().div_ceil(POLL.as_millis()) {
        if queue.queued.load(Ordering::Acquire) == 0 {
            return;
        }
        std::thread::sleep(POLL);
    }
}

impl Write for &LogWriter {
    /// One call per event, with the whole formatted line.
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        self.write_line(line);
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = &'a Self;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

/// Whether fd 2 is a regular file (fstat on a duplicate of it).
fn stderr_is_regular_file() -> bool {
    use std::os::fd::AsFd as _;
    std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map(std::fs::File::from)
        .and_then(|f| f.metadata())
        .is_ok_and(|m| m.file_type().is_file())
}
