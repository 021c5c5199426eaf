//! The keyring file: permissions, format errors that name the problem.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;

use mux_core::ErrorKind;
use mux_encrypt::Keyring;

fn file(text: &str, mode: u32) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(mode)).unwrap();
    f
}

const GOOD: &str = "current = \"k2\"\n[keys]\nk1 = \"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\"\nk2 = \"AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=\"\n";

#[test]
fn a_private_keyring_opens() {
    let f = file(GOOD, 0o600);
    let ring = Keyring::open(f.path()).unwrap();
    assert_eq!(ring.ids().collect::<Vec<_>>(), ["k1", "k2"]);
}

#[test]
fn a_keyring_others_can_read_is_refused_with_the_fix() {
    let f = file(GOOD, 0o644);
    let e = Keyring::open(f.path()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains("chmod 600"), "{e}");
}

#[test]
fn bad_keyrings_name_the_problem() {
    for (text, expect) in [
        (
            "current = \"k3\"\n[keys]\nk1 = \"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\"\n",
            "not one of its keys (k1)",
        ),
        ("current = \"k1\"\n[keys]\nk1 = \"AQEB\"\n", "is 3 bytes"),
        (
            "current = \"k1\"\n[keys]\nk1 = \"not base64!\"\n",
            "is not base64",
        ),
        ("current = \"k1\"\n", "not a keyring"),
    ] {
        let f = file(text, 0o600);
        let e = Keyring::open(f.path()).unwrap_err();
        assert!(e.to_string().contains(expect), "{text}: {e}");
    }
    let e = Keyring::open("/nonexistent/keyring.toml").unwrap_err();
    assert!(e.to_string().contains("cannot read it"), "{e}");
}
