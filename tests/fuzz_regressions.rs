//! Inputs the fuzz targets (fuzz/, scripts/fuzz) found, minimised, kept
//! in tests/fixtures/fuzz/<target>/ and replayed here with the targets'
//! checks, so a fixed bug stays fixed without nightly or libFuzzer.

use std::path::{Path, PathBuf};

use ingress_authz::config::ConfigError;
use ingress_authz::engine::Engine;

fn inputs(target: &str) -> Vec<(PathBuf, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fuzz")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_file())
        .map(|p| {
            let text =
                std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, text)
        })
        .collect();
    files.sort();
    files
}

/// The `config` target's property: no panic, and every error and warning
/// has a location (line and column from 1, within the text).
#[test]
fn config_errors_always_have_a_location() {
    let cases = inputs("config");
    assert!(!cases.is_empty());
    for (path, text) in cases {
        let lines = text.split(['\n', '\r']).count() + 1;
        let located = |line: usize, col: usize| line >= 1 && col >= 1 && line <= lines;
        match Engine::from_text(&text, "fuzz.yaml", &|_| None) {
            Ok(engine) => {
                for w in &engine.warnings {
                    assert!(
                        located(w.loc.mark.line, w.loc.mark.col),
                        "{}: {w}",
                        path.display()
                    );
                }
            }
            Err(ConfigError::Invalid { errors, .. }) => {
                assert!(!errors.is_empty(), "{}", path.display());
                for e in &errors {
                    assert!(
                        located(e.loc.mark.line, e.loc.mark.col),
                        "{}: {e}",
                        path.display()
                    );
                }
            }
            Err(ConfigError::Syntax { source, .. }) => {
                assert!(
                    located(source.mark.line, source.mark.col),
                    "{}: {source}",
                    path.display()
                );
            }
            Err(e) => panic!("{}: {e}", path.display()),
        }
    }
}
