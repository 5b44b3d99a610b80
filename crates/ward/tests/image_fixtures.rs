//! Checks the test images and registry of `common::images` against the tools the image code is
//! measured by: skopeo, umoci and the CNCF registry.
//!
//! Needs the Debian packages `busybox-static`, `docker-registry`, `skopeo` and `umoci`.

mod common;

use std::collections::BTreeSet;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::images::{
    blob_path, busybox_image, foreign_architecture, host_architecture, push, run_tool,
    sha256_digest, skopeo, umoci, write_multi_platform_layout, Compression, ImageBuilder, Layer,
    Registry,
};
use serde_json::Value;

/// `skopeo ARGS...` with a permissive policy, its stdout parsed as JSON.
fn skopeo_json(arguments: &[&str]) -> (Vec<u8>, Value) {
    let raw = run_tool(skopeo().arg("--insecure-policy").args(arguments));
    let value = serde_json::from_slice(&raw)
        .unwrap_or_else(|error| panic!("skopeo {arguments:?} printed no JSON: {error}"));
    (raw, value)
}

#[test]
fn fixture_layout_unpacks_with_umoci_and_runs_busybox() {
    let work = tempfile::tempdir().expect("temporary directory");
    let layout = work.path().join("layout");
    let info = busybox_image().write_layout(&layout, "1");

    let reference = format!("oci:{}:1", layout.display());
    let (raw, manifest) = skopeo_json(&["inspect", "--raw", &reference]);
    assert_eq!(sha256_digest(&raw), info.manifest_digest);
    assert_eq!(manifest["config"]["digest"], info.config_digest.as_str());
    assert_eq!(manifest["layers"].as_array().map(Vec::len), Some(3));

    let bundle = work.path().join("bundle");
    run_tool(
        umoci()
            .args(["unpack", "--rootless", "--image"])
            .arg(format!("{}:1", layout.display()))
            .arg(&bundle),
    );
    let rootfs = bundle.join("rootfs");
    assert!(rootfs.join("etc/ward-fixture/keep").is_file());
    assert!(!rootfs.join("etc/ward-fixture/gone").exists());
    assert_eq!(
        std::fs::read_to_string(rootfs.join("srv/index.html")).expect("read /srv/index.html"),
        "hello from the image\n"
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("srv/second")).expect("read /srv/second"),
        "second layer\n"
    );
    assert_eq!(
        std::fs::read_link(rootfs.join("bin/sh")).expect("read /bin/sh"),
        Path::new("busybox")
    );
    let tmp_mode = std::fs::metadata(rootfs.join("tmp"))
        .expect("stat /tmp")
        .permissions();
    assert_eq!(tmp_mode.mode() & 0o7777, 0o1777);
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).expect("read /etc/passwd");
    assert!(passwd.contains("nobody:x:65534:65534:"), "{passwd}");

    let echoed = run_tool(Command::new(rootfs.join("bin/busybox")).args(["echo", "hi"]));
    assert_eq!(String::from_utf8_lossy(&echoed), "hi\n");

    let config: Value = serde_json::from_slice(
        &std::fs::read(bundle.join("config.json")).expect("read the runtime config"),
    )
    .expect("parse the runtime config");
    assert_eq!(config["process"]["cwd"], "/srv");
    assert!(
        config["process"]["env"]
            .as_array()
            .is_some_and(|env| env.iter().any(|entry| entry == "FIXTURE=1")),
        "{config}"
    );
}

#[test]
fn every_compression_gives_layers_that_decompress_to_their_diff_ids() {
    for compression in [Compression::Gzip, Compression::Zstd, Compression::None] {
        let work = tempfile::tempdir().expect("temporary directory");
        let image = ImageBuilder::new()
            .layer(Layer::new().file("/a/b/c", "c\n", 0o600).dir("/a"))
            .layer(Layer::new().opaque("/a").symlink("/a/link", "/etc/passwd"))
            .compression(compression);
        let info = image.write_layout(work.path(), "latest");
        assert_eq!(
            info,
            image.write_layout(work.path(), "again"),
            "not deterministic"
        );

        let reference = format!("oci:{}:latest", work.path().display());
        let (_, manifest) = skopeo_json(&["inspect", "--raw", &reference]);
        let config: Value = serde_json::from_slice(
            &std::fs::read(blob_path(work.path(), &info.config_digest)).expect("read the config"),
        )
        .expect("parse the config");
        for (index, layer_digest) in info.layer_digests.iter().enumerate() {
            let layer = &manifest["layers"][index];
            assert_eq!(layer["mediaType"], compression.media_type());
            assert_eq!(layer["digest"], layer_digest.as_str());
            let blob = std::fs::read(blob_path(work.path(), layer_digest)).expect("read a layer");
            let tar = match compression {
                Compression::Gzip => {
                    let mut tar = Vec::new();
                    flate2::read::GzDecoder::new(blob.as_slice())
                        .read_to_end(&mut tar)
                        .expect("gunzip a layer");
                    tar
                }
                Compression::Zstd => zstd::stream::decode_all(blob.as_slice()).expect("unzstd"),
                Compression::None => blob,
            };
            assert_eq!(sha256_digest(&tar), info.diff_ids[index]);
            assert_eq!(
                config["rootfs"]["diff_ids"][index],
                info.diff_ids[index].as_str()
            );
        }

        // Undeclared parents come first; a declared directory keeps its place and mode.
        let tar = Layer::new()
            .file("/a/b/c", "c\n", 0o600)
            .dir_owned("/a", 0o700, 7, 7)
            .tar();
        let mut archive = tar::Archive::new(tar.as_slice());
        let entries: Vec<(String, u32, u64)> = archive
            .entries()
            .expect("read the layer")
            .map(|entry| {
                let entry = entry.expect("read an entry");
                let header = entry.header();
                (
                    entry.path().expect("entry path").display().to_string(),
                    header.mode().expect("mode"),
                    header.uid().expect("uid"),
                )
            })
            .collect();
        assert_eq!(
            entries,
            [
                ("a/".to_string(), 0o700, 7),
                ("a/b/".to_string(), 0o755, 0),
                ("a/b/c".to_string(), 0o600, 0),
            ]
        );
    }
}

#[test]
fn registry_serves_pushed_images_and_indexes_and_stops_on_drop() {
    let work = tempfile::tempdir().expect("temporary directory");
    let registry = Registry::start();

    let fixture = work.path().join("fixture");
    let info = busybox_image().write_layout(&fixture, "1");
    push(&fixture, "1", &registry, "fixture");
    let reference = format!("docker://{}/fixture:1", registry.address);
    let (_, inspected) = skopeo_json(&["inspect", "--tls-verify=false", &reference]);
    assert_eq!(inspected["Digest"], info.manifest_digest.as_str());
    assert_eq!(inspected["Architecture"], host_architecture());
    assert_eq!(inspected["Layers"].as_array().map(Vec::len), Some(3));
    assert!(
        inspected["Env"]
            .as_array()
            .is_some_and(|env| env.iter().any(|entry| entry == "FIXTURE=1")),
        "{inspected}"
    );

    let multi = work.path().join("multi");
    let index_digest = write_multi_platform_layout(&busybox_image(), &multi, "1");
    push(&multi, "1", &registry, "multi");
    let reference = format!("docker://{}/multi:1", registry.address);
    let (raw, index) = skopeo_json(&["inspect", "--tls-verify=false", "--raw", &reference]);
    assert_eq!(sha256_digest(&raw), index_digest);
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let architectures: BTreeSet<&str> = index["manifests"]
        .as_array()
        .expect("an index lists manifests")
        .iter()
        .filter_map(|manifest| manifest["platform"]["architecture"].as_str())
        .collect();
    assert_eq!(
        architectures,
        BTreeSet::from([host_architecture(), foreign_architecture()])
    );
    // skopeo picks the host's image from the index; `Digest` stays the index's.
    let (_, host) = skopeo_json(&["inspect", "--tls-verify=false", &reference]);
    assert_eq!(host["Digest"], index_digest.as_str());
    assert_eq!(host["Architecture"], host_architecture());
    assert_eq!(host["Layers"], serde_json::json!(info.layer_digests));
    let (_, foreign) = skopeo_json(&[
        "--override-arch",
        foreign_architecture(),
        "inspect",
        "--tls-verify=false",
        &reference,
    ]);
    assert_eq!(foreign["Architecture"], foreign_architecture());
    assert_eq!(foreign["Layers"].as_array().map(Vec::len), Some(1));
    assert_ne!(foreign["Layers"], host["Layers"]);

    let pid = nix::unistd::Pid::from_raw(registry.pid() as i32);
    let storage = registry.directory().to_path_buf();
    drop(registry);
    assert_eq!(
        nix::sys::signal::kill(pid, None),
        Err(nix::errno::Errno::ESRCH),
        "the registry outlived its drop"
    );
    assert!(!storage.exists(), "the registry left {}", storage.display());
}

#[test]
fn docker_save_archive_reads_with_skopeo() {
    let work = tempfile::tempdir().expect("temporary directory");
    let archive = work.path().join("fixture.tar");
    let image = busybox_image();
    image.write_docker_save(&archive, "ward/fixture:1");
    let diff_ids = image
        .write_layout(&work.path().join("layout"), "1")
        .diff_ids;

    for reference in [
        format!("docker-archive:{}", archive.display()),
        format!("docker-archive:{}:ward/fixture:1", archive.display()),
    ] {
        let (_, inspected) = skopeo_json(&["inspect", &reference]);
        assert_eq!(
            inspected["Layers"],
            serde_json::json!(diff_ids),
            "{reference}"
        );
        assert_eq!(inspected["Architecture"], host_architecture());
        assert!(
            inspected["Env"]
                .as_array()
                .is_some_and(|env| env.iter().any(|entry| entry == "FIXTURE=1")),
            "{inspected}"
        );
    }
}
