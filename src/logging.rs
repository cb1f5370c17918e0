//! Where log lines go and how they look: JSON or text for `serve`; for the
//! one-shot commands (`validate`, `explain`) the same plain `warning: ...`
//! lines on stderr as their own output, never JSON mixed in.

use std::fmt;
use std::io::IsTerminal;

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
        .with_writer(std::io::stderr);
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
