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

/// Puts the calling thread under `SCHED_BATCH`, at nice 0 (a nice value the process
/// was started with is kept when lowering it would need privileges, as it does).
///
/// # Errors
/// The operating system's refusal.
#[cfg(target_os = "linux")]
pub fn batch_current_thread() -> Result<(), thread_priority::Error> {
    use thread_priority::{
        NormalThreadSchedulePolicy, ThreadPriority, ThreadPriorityOsValue, ThreadSchedulePolicy,
        set_thread_priority_and_policy, thread_native_id,
    };
    set_thread_priority_and_policy(
        thread_native_id(),
        ThreadPriority::Os(ThreadPriorityOsValue::default()),
        ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Batch),
    )
}

/// Other systems have no such policy; their threads keep the default.
///
/// # Errors
/// None.
#[cfg(not(target_os = "linux"))]
pub fn batch_current_thread() -> Result<(), std::convert::Infallible> {
    Ok(())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use thread_priority::{
        NormalThreadSchedulePolicy, ThreadSchedulePolicy, thread_schedule_policy,
    };

    use super::batch_current_thread;

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
}
