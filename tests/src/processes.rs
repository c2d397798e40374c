//! The host processes the emulator runs for a function, and what /proc says of them (Linux
//! only, as Lambda).

use std::path::Path;

/// Pids of the running processes of a function deployed on the stack at `endpoint`: the
/// emulator starts each with `AWS_LAMBDA_FUNCTION_NAME` and `AWS_ENDPOINT_URL` in its
/// environment. Every stack names its functions alike, so the endpoint tells this stack's apart
/// from those of another checkout's tests on the same machine.
pub fn function_pids(function_name: &str, endpoint: &str) -> Vec<String> {
    let wanted = [format!("AWS_LAMBDA_FUNCTION_NAME={function_name}"), format!("AWS_ENDPOINT_URL={endpoint}")];
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else { continue };
        if wanted.iter().all(|wanted| environ.split(|b| *b == 0).any(|var| var == wanted.as_bytes())) {
            pids.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    pids
}

/// Peak resident set size (VmHWM) in KiB of `/proc/<pid>` (`"self"` for this process); `None`
/// if the process is gone.
pub fn vm_hwm_kib(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(Path::new("/proc").join(pid).join("status")).ok()?;
    status.lines().find_map(|line| line.strip_prefix("VmHWM:"))?.trim().trim_end_matches("kB").trim().parse().ok()
}
