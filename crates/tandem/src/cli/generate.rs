//! Man pages and shell completions generated from the command-line
//! definitions (clap_mangen, clap_complete), so they never drift from
//! `--help`. The package build runs `tandem man DIR` and `tandem
//! completions SHELL`.

use std::path::Path;

use anyhow::Context;

/// Writes `tandem.8` and one `tandem-SUBCOMMAND.8` per subcommand into
/// `dir`; returns the files written.
pub fn man_pages(cmd: &clap::Command, dir: &Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let mut written = Vec::new();
    let mut page = |cmd: clap::Command, name: &str| -> anyhow::Result<()> {
        let path = dir.join(format!("{name}.8"));
        let mut out = Vec::new();
        clap_mangen::Man::new(cmd.name(name.to_string()))
            .section("8")
            .manual("tandem")
            .render(&mut out)
            .with_context(|| format!("render {name}(8)"))?;
        std::fs::write(&path, out).with_context(|| format!("write {}", path.display()))?;
        written.push(path);
        Ok(())
    };
    page(cmd.clone(), "tandem")?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("tandem-{}", sub.get_name());
        page(sub.clone(), &name)?;
    }
    Ok(written)
}

/// Prints the completion script for `shell` (bash, zsh, fish, elvish,
/// powershell) to stdout.
pub fn completions(cmd: &mut clap::Command, shell: clap_complete::Shell) {
    clap_complete::generate(shell, cmd, "tandem", &mut std::io::stdout());
}
