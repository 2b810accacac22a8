//! Embeds `migrations/V{n}__{name}.sql` into the binary: writes a const list of
//! (file name, contents) to `$OUT_DIR/migrations.rs`.

use std::path::Path;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<(String, String)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            let path = e.path();
            let name = match path.file_name().and_then(|n| n.to_str()) {
                Some(n) => n.to_string(),
                None => continue,
            };
            if name.ends_with(".sql") && path.is_file() {
                println!("cargo:rerun-if-changed={}", path.display());
                files.push((name, path.display().to_string()));
            }
        }
    }
    files.sort();
    let mut out = String::from(
        "/// Migration files embedded at build time: (file name, contents).\n\
         pub static EMBEDDED: &[(&str, &str)] = &[\n",
    );
    for (name, path) in &files {
        out.push_str(&format!("    ({name:?}, include_str!({path:?})),\n"));
    }
    out.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR").unwrap()).join("migrations.rs");
    std::fs::write(dest, out).unwrap();
}
