//! Saves the input being run when the process aborts instead of panicking: a refused huge
//! allocation, a stack overflow or a panic inside a panic all end in `abort()`, which
//! `catch_unwind` cannot catch. A SIGABRT handler writes the input to a file chosen before the
//! run, using only async-signal-safe calls (open, write, close).

use std::ffi::CString;
use std::path::Path;
use std::sync::Once;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

static INPUT_PTR: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
static INPUT_LEN: AtomicUsize = AtomicUsize::new(0);
static PATH: AtomicPtr<libc::c_char> = AtomicPtr::new(std::ptr::null_mut());
/// "aborted; input saved to <path>", formatted before the run: the handler cannot format.
static MESSAGE: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
static MESSAGE_LEN: AtomicUsize = AtomicUsize::new(0);
static INSTALL: Once = Once::new();

extern "C" fn on_abort(_signal: libc::c_int) {
    let input = INPUT_PTR.load(Ordering::SeqCst);
    let len = INPUT_LEN.load(Ordering::SeqCst);
    let path = PATH.load(Ordering::SeqCst);
    if input.is_null() || path.is_null() {
        return;
    }
    // SAFETY: `path` is a leaked, NUL-terminated CString and `message` a leaked buffer of
    // `MESSAGE_LEN` bytes; `input` points at `len` bytes kept alive by the runner for as long
    // as it is armed (the abort happens during that run). open, write and close are
    // async-signal-safe.
    unsafe {
        let fd = libc::open(path, libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC, 0o644);
        if fd >= 0 {
            let mut written = 0;
            while written < len {
                let n = libc::write(fd, input.add(written).cast(), len - written);
                if n <= 0 {
                    break;
                }
                written += n as usize;
            }
            libc::close(fd);
        }
        let message = MESSAGE.load(Ordering::SeqCst);
        if !message.is_null() {
            libc::write(2, message.cast(), MESSAGE_LEN.load(Ordering::SeqCst));
        }
    }
}

/// Installs the handler (once per process) and sets where an aborting input goes.
pub fn prepare(path: &Path) {
    INSTALL.call_once(|| {
        // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value; the handler is an
        // `extern "C" fn(c_int)` as SA_SIGINFO is not set.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_abort as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(libc::SIGABRT, &action, std::ptr::null_mut());
        }
    });
    if let Ok(c_path) = CString::new(path.as_os_str().as_encoded_bytes()) {
        // Leaked on purpose, as the message: the handler may read them at any moment; one
        // of each per target per run.
        let message = format!(
            "presenced-fuzz: aborted; input saved to {}\n",
            path.display()
        );
        let message = Box::leak(message.into_bytes().into_boxed_slice());
        MESSAGE.store(std::ptr::null_mut(), Ordering::SeqCst);
        MESSAGE_LEN.store(message.len(), Ordering::SeqCst);
        MESSAGE.store(message.as_mut_ptr(), Ordering::SeqCst);
        PATH.store(c_path.into_raw(), Ordering::SeqCst);
    }
}

/// Marks `input` as the one to save should the process abort now.
pub fn arm(input: &[u8]) {
    INPUT_LEN.store(input.len(), Ordering::SeqCst);
    INPUT_PTR.store(input.as_ptr().cast_mut(), Ordering::SeqCst);
}

pub fn disarm() {
    INPUT_PTR.store(std::ptr::null_mut(), Ordering::SeqCst);
}
