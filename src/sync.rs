//! Locking that survives a panicked holder. A device's mutex is shared by
//! vCPU threads and the event loop; if one of them panicked while holding
//! it, the others still need to read counters and shut the VM down, so the
//! poison flag is ignored (the data is plain counters and queues, valid
//! between any two statements).

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, taking the guard even if a previous holder panicked.
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_mutex_still_locks() {
        let m = std::sync::Arc::new(Mutex::new(5));
        let m2 = m.clone();
        let _ = std::thread::spawn(move || {
            let _g = m2.lock().unwrap();
            panic!("poison it");
        })
        .join();
        assert!(m.is_poisoned());
        assert_eq!(*lock(&m), 5);
    }
}
