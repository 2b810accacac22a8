//! `[backup] compression` and `compression_level`: zstd (the default), gzip and none each
//! round trip through backup create, list, verify, restore and drill; a backup written
//! before the setting existed (gzip, the old content label, no summary fields) still
//! verifies, restores and drills; a wrong value is refused with its file:line:col.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use opsctl::backup::compress::{Codec, Compression};
use opsctl::backup::{format, keys};

use crate::backup::{content, db_exists, Env};
use crate::common::opsctl;

fn policy(e: &Env, name: &str, text: &str) -> PathBuf {
    let p = e.dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn create_with(e: &Env, policy: Option<&Path>) -> (String, PathBuf) {
    let mut c = e.cmd();
    if let Some(p) = policy {
        c.env("OPSCTL_POLICY", p);
    }
    let r = c
        .args(["backup", "create", "--format", "json", "--dir"])
        .arg(e.repo())
        .run()
        .success();
    let j = r.json();
    (
        j["id"].as_str().unwrap().to_string(),
        PathBuf::from(j["path"].as_str().unwrap()),
    )
}

fn label(file: &Path) -> String {
    let bytes = std::fs::read(file).unwrap();
    format::Header::read(&mut &bytes[..]).unwrap().0.content
}

fn summary(file: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(file.with_extension("json")).unwrap()).unwrap()
}

/// verify, restore into a new database (same content), drill: all succeed.
fn verify_restore_drill(e: &Env, file: &Path, tag: &str) {
    let r = e.cmd().args(["backup", "verify"]).arg(file).run().success();
    assert!(r.stdout.contains("is good"), "{}", r.all());
    let target = format!("{}_{tag}", e.db.name);
    e.cmd()
        .args(["restore", "--create", "--target-db", &target])
        .arg(file)
        .run()
        .success();
    assert_eq!(content(&target), content(&e.db.name));
    let j = e
        .cmd()
        .args(["drill", "--format", "json"])
        .arg(file)
        .run()
        .success()
        .json();
    assert_eq!(j["ok"], true, "{j}");
    assert!(!db_exists(j["scratch_database"].as_str().unwrap()));
}

#[test]
fn zstd_by_default_gzip_and_none_by_policy_each_round_trip() {
    let e = Env::new("cmp_round", 3000);
    let gzip = policy(
        &e,
        "gzip.toml",
        "[backup]\ncompression = \"gzip\"\ncompression_level = 6\n",
    );
    let none = policy(&e, "none.toml", "[backup]\ncompression = \"none\"\n");
    let cases = [
        (None, "zstd", Some(3), "pg_dump-custom+zstd"),
        (Some(gzip.as_path()), "gzip", Some(6), "pg_dump-custom+gzip"),
        (Some(none.as_path()), "none", None, "pg_dump-custom+none"),
    ];
    for (p, codec, level, header) in cases {
        let (id, file) = create_with(&e, p);
        assert_eq!(label(&file), header, "{codec}");
        let s = summary(&file);
        assert_eq!(s["compression"], codec, "{s}");
        assert_eq!(s["compression_level"], serde_json::json!(level), "{s}");
        let dump = s["dump_bytes"].as_u64().unwrap();
        let compressed = s["compressed_bytes"].as_u64().unwrap();
        if codec == "none" {
            assert_eq!(compressed, dump, "{s}");
        } else {
            assert!(compressed * 2 < dump, "{codec}: {s}");
        }
        let list = opsctl()
            .args(["backup", "list", "--format", "json", "--dir"])
            .arg(e.repo())
            .run()
            .success()
            .json();
        let entry = list
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["id"] == id.as_str())
            .unwrap_or_else(|| panic!("{id} not listed: {list}"))
            .clone();
        assert_eq!(entry["compression"], codec, "{entry}");
        verify_restore_drill(&e, &file, codec);
    }
}

#[test]
fn a_backup_written_before_the_setting_still_verifies_restores_and_drills() {
    // Rewrites a fresh backup exactly as opsctl wrote it before the setting: the dump
    // gzipped at level 3 under the content label "pg_dump-custom+gzip", the manifest's
    // compressed_bytes of that stream, and a summary without the compression fields.
    let e = Env::new("cmp_old", 2000);
    let (_, file) = create_with(&e, None);
    let key = keys::load_key_file(&e.key).unwrap();
    let bytes = std::fs::read(&file).unwrap();
    let mut r = format::Reader::open(&bytes[..], &[keys::KeyMaterial::Key(key.clone())]).unwrap();
    assert_eq!(r.header.content, "pg_dump-custom+zstd");
    let mut zstd = Vec::new();
    r.read_to_end(&mut zstd).unwrap();
    let mut m: serde_json::Value = serde_json::from_slice(&r.finish().unwrap()).unwrap();
    let mut dump = Vec::new();
    Codec::Zstd
        .decoder(std::io::BufReader::new(&zstd[..]))
        .unwrap()
        .read_to_end(&mut dump)
        .unwrap();
    let mut gz = Compression::new(Codec::Gzip, Some(3))
        .unwrap()
        .encoder(Vec::new())
        .unwrap();
    gz.write_all(&dump).unwrap();
    let gz = gz.finish().unwrap();
    m["compressed_bytes"] = serde_json::json!(gz.len());
    let mut w = format::Writer::new(
        Vec::new(),
        &[keys::KeyMaterial::Key(key)],
        "pg_dump-custom+gzip",
    )
    .unwrap();
    w.write_all(&gz).unwrap();
    let (out, _) = w.finish(&serde_json::to_vec(&m).unwrap()).unwrap();
    std::fs::write(&file, &out).unwrap();
    let mut s = summary(&file);
    let o = s.as_object_mut().unwrap();
    o.remove("compression");
    o.remove("compression_level");
    o.insert("compressed_bytes".into(), serde_json::json!(gz.len()));
    o.insert("file_bytes".into(), serde_json::json!(out.len()));
    std::fs::write(file.with_extension("json"), serde_json::to_vec(&s).unwrap()).unwrap();

    let list = opsctl()
        .args(["backup", "list", "--format", "json", "--dir"])
        .arg(e.repo())
        .run()
        .success()
        .json();
    assert_eq!(list[0]["compression"], "gzip", "{list}");
    verify_restore_drill(&e, &file, "old");
}

#[test]
fn a_wrong_compression_setting_is_refused_by_policy_check_and_backup_create() {
    let e = Env::new("cmp_bad", 10);
    let cases = [
        (
            "lz4.toml",
            "[backup]\ncompression = \"lz4\"\n",
            ":2:15:",
            "unknown variant `lz4`",
        ),
        (
            "level.toml",
            "[backup]\ncompression = \"gzip\"\ncompression_level = 12\n",
            ":3:1:",
            "compression_level 12 is out of range for gzip: use 1 to 9",
        ),
    ];
    for (name, text, at, msg) in cases {
        let p = policy(&e, name, text);
        let r = opsctl().args(["policy", "check"]).arg(&p).run().code(1);
        assert!(
            r.all().contains(&format!("{name}{at}")) && r.all().contains(msg),
            "{}",
            r.all()
        );
        let r = e
            .cmd()
            .env("OPSCTL_POLICY", &p)
            .args(["backup", "create", "--dir"])
            .arg(e.repo())
            .run()
            .code(2);
        assert!(r.stderr.contains(msg), "{}", r.stderr);
        assert!(!e.repo().exists(), "nothing may be written");
    }
}

/// `backup create` with `args` and the policy `p`: (header codec, summary), after a good verify.
fn create_flags(e: &Env, p: &Path, args: &[&str]) -> (String, serde_json::Value) {
    let j = e
        .cmd()
        .env("OPSCTL_POLICY", p)
        .args(["backup", "create", "--format", "json", "--dir"])
        .arg(e.repo())
        .args(args)
        .run()
        .success()
        .json();
    let file = PathBuf::from(j["path"].as_str().unwrap());
    let r = e
        .cmd()
        .args(["backup", "verify"])
        .arg(&file)
        .run()
        .success();
    assert!(r.stdout.contains("is good"), "{}", r.all());
    (label(&file), summary(&file))
}

#[test]
fn the_compression_flags_override_the_policy_for_one_run_only() {
    let e = Env::new("cmp_flags", 2000);
    let gzip6 = policy(
        &e,
        "gzip6.toml",
        "[backup]\ncompression = \"gzip\"\ncompression_level = 6\n",
    );
    // (flags, header label, summary codec, summary level)
    let cases: [(&[&str], &str, &str, Option<i32>); 5] = [
        // --compression alone: that codec at its own default level, not the policy's 6.
        (
            &["--compression", "zstd"],
            "pg_dump-custom+zstd",
            "zstd",
            Some(3),
        ),
        (
            &["--compression", "zstd", "--compression-level", "19"],
            "pg_dump-custom+zstd",
            "zstd",
            Some(19),
        ),
        // --compression-level alone: the policy's codec at that level.
        (
            &["--compression-level", "9"],
            "pg_dump-custom+gzip",
            "gzip",
            Some(9),
        ),
        (
            &["--compression", "none"],
            "pg_dump-custom+none",
            "none",
            None,
        ),
        // No flag: the policy again (an override lasts one run).
        (&[], "pg_dump-custom+gzip", "gzip", Some(6)),
    ];
    for (args, header, codec, level) in cases {
        let (l, s) = create_flags(&e, &gzip6, args);
        assert_eq!(l, header, "{args:?}");
        assert_eq!(s["compression"], codec, "{args:?}: {s}");
        assert_eq!(
            s["compression_level"],
            serde_json::json!(level),
            "{args:?}: {s}"
        );
    }
    // The level is really used: gzip 9 is not larger than gzip 6 would be, and zstd 19
    // is smaller than zstd 3 on the same data.
    let list = opsctl()
        .args(["backup", "list", "--format", "json", "--dir"])
        .arg(e.repo())
        .run()
        .success()
        .json();
    let bytes = |codec: &str, level: i32| -> u64 {
        list.as_array()
            .unwrap()
            .iter()
            .find(|b| b["compression"] == codec && b["compression_level"] == level)
            .and_then(|b| b["compressed_bytes"].as_u64())
            .unwrap_or_else(|| panic!("no {codec} {level} backup listed: {list}"))
    };
    assert!(bytes("zstd", 19) < bytes("zstd", 3), "{list}");
    // A backup made with an override restores like any other.
    let (_, file) = {
        let j = e
            .cmd()
            .env("OPSCTL_POLICY", &gzip6)
            .args([
                "backup",
                "create",
                "--format",
                "json",
                "--compression",
                "zstd",
                "--dir",
            ])
            .arg(e.repo())
            .run()
            .success()
            .json();
        (
            j["id"].as_str().unwrap().to_string(),
            PathBuf::from(j["path"].as_str().unwrap()),
        )
    };
    verify_restore_drill(&e, &file, "flag");
}

#[test]
fn bad_compression_flags_are_refused_before_anything_is_written() {
    let e = Env::new("cmp_badflag", 10);
    let cases: [(&[&str], &str); 6] = [
        (&["--compression", "lz4"], "lz4"),
        (
            &["--compression", "gzip", "--compression-level", "10"],
            "--compression-level 10 is out of range for gzip: use 1 to 9",
        ),
        (
            &["--compression", "zstd", "--compression-level", "20"],
            "--compression-level 20 is out of range for zstd: use 1 to 19",
        ),
        (
            &["--compression", "zstd", "--compression-level", "0"],
            "--compression-level 0 is out of range for zstd: use 1 to 19",
        ),
        (
            &["--compression", "none", "--compression-level", "3"],
            "leave the level out",
        ),
        // A level alone is checked against the policy's codec (zstd by default).
        (
            &["--compression-level", "22"],
            "--compression-level 22 is out of range for zstd",
        ),
    ];
    for (args, msg) in cases {
        let r = e
            .cmd()
            .args(["backup", "create", "--dir"])
            .arg(e.repo())
            .args(args)
            .run()
            .code(2);
        assert!(r.stderr.contains(msg), "{args:?}: {}", r.stderr);
        assert!(!e.repo().exists(), "{args:?}: nothing may be written");
    }
}

#[test]
fn verify_refuses_a_summary_whose_compression_disagrees_with_the_header() {
    let e = Env::new("cmp_sumhdr", 200);
    let (_, file) = create_with(&e, None);
    assert_eq!(summary(&file)["compression"], "zstd");
    let mut s = summary(&file);
    s["compression"] = serde_json::json!("gzip");
    std::fs::write(file.with_extension("json"), s.to_string()).unwrap();
    let r = e.cmd().args(["backup", "verify"]).arg(&file).run().code(1);
    assert!(
        r.stderr
            .contains("compression: summary says gzip, the header says zstd"),
        "{}",
        r.stderr
    );
    // Put back, it is good again.
    s["compression"] = serde_json::json!("zstd");
    std::fs::write(file.with_extension("json"), s.to_string()).unwrap();
    e.cmd()
        .args(["backup", "verify"])
        .arg(&file)
        .run()
        .success();
}
