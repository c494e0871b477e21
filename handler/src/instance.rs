//! Who this process is, in the names it leaves in the store (lease holders, outbox claims):
//! `host/pid[/...]`. A name of this host whose process is gone belongs to a crashed predecessor
//! (a restart after a kill), so what it held can be taken at once instead of waiting for it to
//! run out; names of other hosts, or of live processes, are left to expire.

/// This process: the Functions instance (or host name) and the pid.
pub fn instance_name() -> String {
    let host = std::env::var("WEBSITE_INSTANCE_ID")
        .ok()
        .map(|id| id.chars().take(12).collect())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "local".into());
    format!("{host}/{}", std::process::id())
}

/// Whether `holder` (`host/pid[/anything]`) names a process of `me`'s host that no longer runs.
pub fn held_by_dead_local_process(holder: &str, me: &str) -> bool {
    let mut holder_parts = holder.splitn(3, '/');
    let (Some(host), Some(pid)) = (holder_parts.next(), holder_parts.next()) else {
        return false;
    };
    let Some((my_host, my_pid)) = me.split_once('/') else {
        return false;
    };
    let my_pid = my_pid.split('/').next().unwrap_or(my_pid);
    host == my_host
        && pid != my_pid
        && !pid.is_empty()
        && pid.bytes().all(|b| b.is_ascii_digit())
        && !std::path::Path::new("/proc").join(pid).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_dead_process_of_this_host_is_a_crashed_predecessor() {
        let me = format!("host-a/{}", std::process::id());
        assert!(
            held_by_dead_local_process("host-a/999999999", &me),
            "a pid that cannot exist"
        );
        assert!(
            held_by_dead_local_process("host-a/999999999/lease-7", &me),
            "with a suffix"
        );
        assert!(!held_by_dead_local_process(&me, &me), "this process");
        assert!(
            !held_by_dead_local_process(&format!("{me}/lease-1"), &me),
            "this process's lease"
        );
        assert!(
            !held_by_dead_local_process("host-b/999999999", &me),
            "another host: let it run out"
        );
        assert!(!held_by_dead_local_process("host-a/1", &me), "a live process (init)");
        assert!(!held_by_dead_local_process("garbage", &me));
        assert!(!held_by_dead_local_process("host-a/../etc", &me), "not a pid");
    }
}
