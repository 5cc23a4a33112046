//! The one place with `unsafe`: process set-up between fork and exec, pidfds,
//! and the allocator (its mmap threshold, `malloc_trim`).
#![allow(unsafe_code)]

use std::os::unix::process::CommandExt;

/// Makes the spawned process the leader of a new session, so closing the
/// terminal it was started from sends it no SIGHUP (which ev reads as "reload").
pub fn detach(command: &mut std::process::Command) {
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
}

/// Allocations of at least `bytes` get mappings of their own, unmapped the
/// moment they are freed. glibc otherwise raises its threshold after the
/// first such free and serves later ones from its heaps, where freed memory
/// stays resident between other live allocations: a portal that gave back
/// ten thousand idle players' MCCP2 compressors (see portal/src/mccp.rs)
/// kept every byte of them. Other C libraries keep their own policy.
pub fn unmap_large_frees(bytes: usize) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let bytes = nix::libc::c_int::try_from(bytes).unwrap_or(nix::libc::c_int::MAX);
        // SAFETY: mallopt only changes the allocator's tuning; any value is
        // accepted or refused (returning 0), never undefined.
        unsafe {
            nix::libc::mallopt(nix::libc::M_MMAP_THRESHOLD, bytes);
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = bytes;
}

/// Returns the allocator's free pages to the system, wherever they lie in
/// its heaps (glibc's `malloc_trim`); elsewhere a no-op. Costs a walk of the
/// heaps, so call it after a lot was freed, not after every free.
pub fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only hands free pages back; it never touches memory
    // in use and takes no pointers.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}

/// A pidfd for `pid` (Linux 5.3+): it becomes readable when the process
/// exits, so a process that is not our child can be awaited without polling
/// and without being fooled by its pid being reused.
pub fn pidfd_open(pid: u32) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let pid = nix::libc::pid_t::try_from(pid)
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: a plain syscall with integer arguments; on success it returns
    // a new file descriptor that nothing else owns.
    let fd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| std::io::Error::other("pidfd out of range"))?;
    // SAFETY: `fd` was just returned by the kernel and is owned by no one else.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// A future that resolves when process `pid` exits, through its pidfd. The
/// pidfd is opened now, so the process is pinned from this call on; fails at
/// once if it cannot be had (no such process, or a kernel before 5.3).
pub fn process_exit(
    pid: u32,
) -> std::io::Result<impl std::future::Future<Output = std::io::Result<()>>> {
    let fd = pidfd_open(pid)?;
    // SAFETY: the AsyncFd owns `fd`, which nothing else closes or replaces.
    let fd = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
    }
    .map_err(std::io::Error::from)?;
    Ok(async move {
        let _ = fd.readable().await?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn pidfd_of_a_missing_process_is_an_error() {
        // Pid numbers wrap far below this.
        assert!(super::pidfd_open(i32::MAX as u32).is_err());
    }

    #[test]
    fn pidfd_of_ourselves_opens() {
        assert!(super::pidfd_open(std::process::id()).is_ok());
    }

    #[tokio::test]
    async fn process_exit_resolves_when_the_process_ends() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "read line"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let exit = tokio::spawn(super::process_exit(pid).unwrap());
        assert!(!exit.is_finished());
        drop(child.stdin.take());
        child.wait().unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(10), exit)
            .await
            .expect("the exit was not noticed")
            .unwrap()
            .unwrap();
    }
}
