//! Tests of netns.rs: the guest's command line, the bundle's namespace,
//! the paths that say why they are not measured.

use super::*;

fn ctx() -> Context {
    Context {
        tinyvmm: "/t".into(),
        kernels: "/k".into(),
        memory: (128 << 20, "128M".into()),
        workload: Default::default(),
        pvm: false,
        scratch: "/s".into(),
        linux_timeout: Duration::from_secs(1),
        firecracker: None,
        cloud_hypervisor: None,
    }
}

#[test]
fn the_guest_gets_the_network_options_in_place_of_the_workload() {
    let ctx = ctx();
    let line = net_cmdline(&ctx.linux_cmdline(), &ctx, "console=hvc0").unwrap();
    assert!(line.starts_with("console=hvc0 "), "{line}");
    assert!(
        line.ends_with(" tinyvmm.shell=1 ip=10.0.2.2::10.0.2.1:255.255.255.0::eth0:off"),
        "{line}"
    );
    assert!(!line.contains("tinyvmm.exit"), "{line}");
    assert!(net_cmdline("console=ttyS0 quiet", &ctx, "console=hvc0").is_err());
}

#[test]
fn the_bundle_paths_say_why_they_are_not_measured() {
    let ctx = ctx();
    for id in [PathId::TinyvmmBundle, PathId::QemuBundle] {
        let p = Prepared {
            id,
            launcher: Launcher::Vmm {
                program: "/t".into(),
                args: vec![],
                timeout: Duration::from_secs(1),
                pre_exec: None,
            },
            guest_memory: None,
            binary: ("/t".into(), 0),
            image: (0, String::new()),
        };
        let why = start(&p, &ctx, 1).err().expect("not started");
        assert!(why.contains("as a bundle"), "{why}");
    }
}

#[test]
fn a_bundle_joins_the_named_namespace() {
    let dir = std::env::temp_dir().join(format!("tinyvmm-netns-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let b = Bundle {
        dir: dir.clone(),
        rootfs: "/r".into(),
    };
    let c = crate::lab::container::bundle::config(std::path::Path::new("/r"), &[], "h");
    std::fs::write(dir.join("config.json"), c.to_string()).unwrap();
    join_netns(&b, "n1").unwrap();
    let c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let net: Vec<_> = c["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["type"] == "network")
        .collect();
    assert_eq!(net.len(), 1);
    assert_eq!(net[0]["path"], "/run/netns/n1");
    std::fs::remove_dir_all(dir).unwrap();
}
