//! The kernel scheduling policy of the HTTP workers.
//!
//! The API shares the cores with PostgreSQL (and, in the benchmark, with the load
//! generator). Under the default policy a worker woken by a reply preempts whoever sent
//! it: a backend halfway through streaming a page's rows, or the client about to send
//! its next request. Each such switch is paid twice, and the worker comes back to one
//! message instead of several. Under `SCHED_BATCH` a woken worker waits for the running
//! task's turn to end instead (milliseconds at most), then finds more work ready.
//! Measured with `just bench`: list pages +6 % at 8 connections and +18 % at 32,
//! gets at 8 +8 %, creates and imports unchanged (docs/benchmarks.md, fourteenth pass).

/// Why a worker keeps the default policy.
#[derive(Debug, thiserror::Error)]
pub enum NotBatched {
    /// The crate that sets the policy also sets the nice value, and can only set it to
    /// 0: an operator's `nice` wins over this tuning.
    #[error("the thread runs at nice {0}, which setting the policy would reset to 0")]
    Niced(i32),
    #[error("the thread's nice value is unknown: {0}")]
    NiceUnknown(String),
    #[cfg(target_os = "linux")]
    #[error("the system refused: {0:?}")]
    Refused(thread_priority::Error),
}

/// Puts the calling thread under `SCHED_BATCH` when it runs at nice 0 (the default).
///
/// # Errors
/// [`NotBatched`]: the thread is left as it was.
#[cfg(target_os = "linux")]
pub fn batch_current_thread() -> Result<(), NotBatched> {
    use thread_priority::{
        NormalThreadSchedulePolicy, ThreadPriority, ThreadPriorityOsValue, ThreadSchedulePolicy,
        set_thread_priority_and_policy, thread_native_id,
    };
    match current_nice()? {
        0 => set_thread_priority_and_policy(
            thread_native_id(),
            ThreadPriority::Os(ThreadPriorityOsValue::default()),
            ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Batch),
        )
        .map_err(NotBatched::Refused),
        nice => Err(NotBatched::Niced(nice)),
    }
}

/// Field 19 of `/proc/thread-self/stat` (nice values are per thread on Linux).
#[cfg(target_os = "linux")]
fn current_nice() -> Result<i32, NotBatched> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat")
        .map_err(|e| NotBatched::NiceUnknown(e.to_string()))?;
    stat_field(&stat, 19)
        .and_then(|nice| nice.parse().ok())
        .ok_or_else(|| NotBatched::NiceUnknown(stat.clone()))
}

/// Field `n` (1-based, as `man 5 proc` numbers them) of a `/proc/.../stat` line.
#[must_use]
pub fn stat_field(stat: &str, n: usize) -> Option<&str> {
    // The name, field 2, is in parentheses and may hold spaces: count from its end.
    let end = stat.rfind(") ")?;
    stat[end + 2..].split(' ').nth(n.checked_sub(3)?)
}

/// Other systems have no such policy; their threads keep the default.
///
/// # Errors
/// None.
#[cfg(not(target_os = "linux"))]
pub fn batch_current_thread() -> Result<(), NotBatched> {
    Ok(())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use thread_priority::{
        NormalThreadSchedulePolicy, ThreadSchedulePolicy, thread_schedule_policy,
    };

    use super::{NotBatched, batch_current_thread};

    #[test]
    fn only_the_calling_thread_changes_and_threads_it_starts_inherit() {
        let batch = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Batch);
        let (own, child) = std::thread::spawn(|| {
            batch_current_thread().unwrap();
            let child = std::thread::spawn(|| thread_schedule_policy().unwrap());
            (thread_schedule_policy().unwrap(), child.join().unwrap())
        })
        .join()
        .unwrap();
        assert_eq!(own, batch);
        assert_eq!(child, batch);
        assert_ne!(thread_schedule_policy().unwrap(), batch);
    }

    #[test]
    fn a_niced_thread_keeps_its_nice_value_and_the_default_policy() {
        use thread_priority::{ThreadPriority, ThreadPriorityValue, set_current_thread_priority};
        let (result, policy) = std::thread::spawn(|| {
            // Raising one's own nice value needs no privilege.
            let low = ThreadPriorityValue::try_from(10).unwrap();
            set_current_thread_priority(ThreadPriority::Crossplatform(low)).unwrap();
            (batch_current_thread(), thread_schedule_policy().unwrap())
        })
        .join()
        .unwrap();
        assert!(
            matches!(result, Err(NotBatched::Niced(n)) if n > 0),
            "{result:?}"
        );
        assert_eq!(
            policy,
            ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Other)
        );
    }
}
