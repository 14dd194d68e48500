//! The `smsmax` binary: check-config exit codes and messages, passwd.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

fn smsmax() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_smsmax"));
    // The tests must not pick up overrides from the environment they run in.
    for (key, _) in std::env::vars_os() {
        if key
            .to_str()
            .is_some_and(|k| k.to_ascii_uppercase().starts_with("SMSMAX_"))
        {
            cmd.env_remove(key);
        }
    }
    cmd
}

fn shipped(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config").join(name)
}

fn check_config(path: &Path) -> Output {
    smsmax().arg("check-config").arg(path).output().expect("run smsmax")
}

/// check-config on a file `name` holding `text`, in a fresh directory.
fn check_config_text(name: &str, text: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    check_config(&path)
}

/// `smsmax passwd` with `input` on its stdin.
fn passwd(input: &[u8]) -> Output {
    let mut child = smsmax()
        .arg("passwd")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn shipped_default_config_is_ok() {
    let path = shipped("smsmax.toml");
    let out = check_config(&path);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{}: ok\n", path.display())
    );
}

#[test]
fn shipped_production_config_is_ok() {
    let out = check_config(&shipped("production.toml"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn unknown_key_exits_2_and_names_it() {
    let out = check_config_text(
        "typo.toml",
        "[smpp]\nlisten = \"127.0.0.1:2775\"\nmax_conections = 10\n",
    );
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("unknown key `smpp.max_conections`"), "{err}");
    assert!(err.contains("typo.toml"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one message: {err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn invalid_value_exits_2_and_names_it() {
    let out = check_config_text("bad.toml", "[storage]\nmax_batch = 0\n");
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("storage.max_batch"), "{err}");
    assert!(err.contains("bad.toml"), "{err}");
}

#[test]
fn env_override_is_applied_and_checked() {
    let out = smsmax()
        .arg("check-config")
        .arg(shipped("smsmax.toml"))
        .env("SMSMAX_CLIENTS", "[{system_id = \"x\", password_hash = \"plain\"}]")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("clients[0].password_hash"), "{}", stderr(&out));
}

#[test]
fn missing_file_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.toml");
    let out = check_config(&path);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn serve_with_bad_config_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.toml");
    let out = smsmax().args(["serve", "--config"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));
}

#[test]
fn passwd_hashes_stdin() {
    let out = passwd(b"s3 cret!\nsecond line is ignored\n");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let phc = stdout.trim_end();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(phc.starts_with("$argon2id$v=19$"), "{phc}");
    assert!(smsmax::password::verify_password(phc, b"s3 cret!"));
    assert!(!smsmax::password::verify_password(phc, b"s3 cret!\n"));
}

#[test]
fn passwd_refuses_what_smpp_cannot_carry() {
    let out = passwd(b"ninechars\n");
    assert_ne!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());
    assert!(stderr(&out).contains("at most 8"), "{}", stderr(&out));
}

#[test]
fn version_and_help() {
    let out = smsmax().arg("--version").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("smsmax "));
    for sub in ["serve", "passwd", "check-config"] {
        let out = smsmax().args([sub, "--help"]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{sub}");
        assert!(!out.stdout.is_empty(), "{sub}");
    }
}
