//! Gives freed memory back to the system once the daemon goes quiet. glibc keeps the pages it
//! freed (in every thread's arena) mapped, so after an import, a pull or a burst of requests
//! berthd would otherwise stay at its peak until the next one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

static ACTIVITY: AtomicU64 = AtomicU64::new(1);

/// Called for every API request.
pub fn note_activity() {
    ACTIVITY.fetch_add(1, Ordering::Relaxed);
}

/// Trims the heap a second or two after the last request of a busy spell.
pub async fn trim_when_quiet() {
    let (mut seen, mut trimmed) = (0, 0);
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = ACTIVITY.load(Ordering::Relaxed);
        if now == seen && now != trimmed {
            trimmed = now;
            let _ = tokio::task::spawn_blocking(trim).await;
        }
        seen = now;
    }
}

#[cfg(target_env = "gnu")]
fn trim() {
    // SAFETY: malloc_trim only returns free pages to the kernel; it is thread-safe.
    unsafe { libc::malloc_trim(0) };
}

#[cfg(not(target_env = "gnu"))]
fn trim() {}
