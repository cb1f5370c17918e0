//! Counts of the `decision` target, printed when the process exits
//! (libFuzzer ends with `exit`, so an `atexit` handler prints them).

use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::fixture::{OPEN, PROTECTED};

static ALLOWS: [AtomicU64; PROTECTED.len()] = [const { AtomicU64::new(0) }; PROTECTED.len()];
static OPEN_ALLOWS: [AtomicU64; OPEN.len()] = [const { AtomicU64::new(0) }; OPEN.len()];
static CHECKS: AtomicU64 = AtomicU64::new(0);
static REGISTER: Once = Once::new();

/// Counts one check, and an allow of `label` (authenticated, or open).
pub fn count(label: Option<&str>, authenticated: bool, open: bool) {
    REGISTER.call_once(|| {
        // SAFETY: registering a plain `extern "C" fn` that takes no arguments.
        unsafe {
            libc::atexit(print_at_exit);
        }
    });
    CHECKS.fetch_add(1, Ordering::Relaxed);
    let Some(label) = label else { return };
    if authenticated && let Some(i) = PROTECTED.iter().position(|p| *p == label) {
        ALLOWS[i].fetch_add(1, Ordering::Relaxed);
    }
    if open && let Some(i) = OPEN.iter().position(|p| *p == label) {
        OPEN_ALLOWS[i].fetch_add(1, Ordering::Relaxed);
    }
}

/// `allows per protected route: rules[0]=12 ...` (one line), and whether
/// every protected route was allowed at least once.
pub fn summary() -> (String, bool) {
    let mut line = format!(
        "decision: {} checks; authenticated allows per protected route:",
        CHECKS.load(Ordering::Relaxed)
    );
    let mut all = true;
    for (i, label) in PROTECTED.iter().enumerate() {
        let n = ALLOWS[i].load(Ordering::Relaxed);
        all &= n > 0;
        line.push_str(&format!(" {label}={n}"));
    }
    line.push_str("; open allows:");
    for (i, label) in OPEN.iter().enumerate() {
        line.push_str(&format!(
            " {label}={}",
            OPEN_ALLOWS[i].load(Ordering::Relaxed)
        ));
    }
    (line, all)
}

extern "C" fn print_at_exit() {
    let (line, all) = summary();
    let verdict = if all {
        "every protected route allowed at least once"
    } else {
        "SOME PROTECTED ROUTE WAS NEVER ALLOWED"
    };
    eprintln!("{line}\ndecision: {verdict}");
}
