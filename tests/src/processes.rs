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

/// /proc's clock ticks (USER_HZ): 100 on Linux for x86_64 and arm64 (bench/pillow_loop.py reads
/// the same fields with os.sysconf("SC_CLK_TCK")).
pub const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// What `/proc/<pid>/stat` counts for a process, every thread of it, ended ones included.
#[derive(Clone, Copy)]
pub struct ProcessCpu {
    pub user_ticks: u64,
    pub sys_ticks: u64,
    /// Page faults served without I/O: first touches of new memory, each one zeroed page.
    pub minor_faults: u64,
}

/// Fields 10 (minflt), 14 (utime) and 15 (stime) of `/proc/<pid>/stat`; `None` if the process
/// is gone; `"self"` for this process.
pub fn process_cpu(pid: &str) -> Option<ProcessCpu> {
    let stat = std::fs::read_to_string(Path::new("/proc").join(pid).join("stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let field = |at: usize| fields.get(at)?.parse::<u64>().ok();
    Some(ProcessCpu { minor_faults: field(7)?, user_ticks: field(11)?, sys_ticks: field(12)? })
}
