//! Puts sockdump where the installed Wireshark looks for extcaps and Lua
//! plugins, as `tshark -G folders` reports them, and keeps the root-owned
//! copy that `--system` installs out of other users' reach.

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where `--system` installs its root-owned copy of sockdump.
pub const SYSTEM_COPY: &str = "/usr/local/lib/sockdump/sockdump";

/// The folders of one Wireshark installation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Folders {
    pub personal_extcap: Option<PathBuf>,
    pub global_extcap: Option<PathBuf>,
    pub personal_lua: Option<PathBuf>,
    pub global_lua: Option<PathBuf>,
}

impl Folders {
    /// Reads `tshark -G folders` output. Wireshark 4.0 prints one global
    /// "Extcap path" and still reads `<personal configuration>/extcap`;
    /// 4.1+ prints "Personal Extcap path" and "Global Extcap path".
    pub fn parse(text: &str) -> Folders {
        let mut folders = Folders::default();
        let mut personal_config = None;
        for line in text.lines() {
            let Some((key, value)) = line.split_once(':') else { continue };
            let value = PathBuf::from(value.trim());
            match key.trim() {
                "Personal Extcap path" => folders.personal_extcap = Some(value),
                "Global Extcap path" | "Extcap path" => folders.global_extcap = Some(value),
                "Personal Lua Plugins" => folders.personal_lua = Some(value),
                "Global Lua Plugins" => folders.global_lua = Some(value),
                "Personal configuration" => personal_config = Some(value),
                _ => {}
            }
        }
        if folders.personal_extcap.is_none() {
            folders.personal_extcap = personal_config.map(|config| config.join("extcap"));
        }
        folders
    }
}

/// Per user (the default) or for every user of the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    User,
    System,
}

/// Where the extcap link and the Lua plugin go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub extcap_dir: PathBuf,
    pub lua_dir: PathBuf,
}

impl Plan {
    pub fn new(folders: &Folders, scope: Scope) -> Result<Plan, String> {
        let (extcap, lua, what) = match scope {
            Scope::User => (&folders.personal_extcap, &folders.personal_lua, "personal"),
            Scope::System => (&folders.global_extcap, &folders.global_lua, "global"),
        };
        match (extcap, lua) {
            (Some(extcap_dir), Some(lua_dir)) => {
                Ok(Plan { extcap_dir: extcap_dir.clone(), lua_dir: lua_dir.clone() })
            }
            _ => Err(format!("Wireshark reports no {what} extcap and Lua plugin folders")),
        }
    }

    pub fn extcap_link(&self) -> PathBuf {
        self.extcap_dir.join("sockdump")
    }

    pub fn lua_plugin(&self) -> PathBuf {
        self.lua_dir.join("sockdump.lua")
    }

    /// Links the extcap to `exe` and writes the Lua plugin, replacing older copies.
    pub fn install(&self, exe: &Path, lua_plugin: &str) -> io::Result<()> {
        std::fs::create_dir_all(&self.extcap_dir)?;
        std::fs::create_dir_all(&self.lua_dir)?;
        let link = self.extcap_link();
        remove_if_present(&link)?;
        std::os::unix::fs::symlink(exe, &link)?;
        std::fs::write(self.lua_plugin(), lua_plugin)
    }

    /// Removes what [`Plan::install`] put there; absent files are fine.
    pub fn uninstall(&self) -> io::Result<()> {
        remove_if_present(&self.extcap_link())?;
        remove_if_present(&self.lua_plugin())
    }
}

/// Who may run a copy installed by [`install_copy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// root:root, mode 0755
    Everyone,
    /// root:GID, mode 0750: only root and the group's members
    Group(u32),
}

/// Copies `from` to `to` as a new root-owned file. It appears under its name
/// complete (a rename), so a running Wireshark never sees half a binary, and
/// as a new file: capabilities of an older copy do not carry over.
pub fn install_copy(from: &Path, to: &Path, access: Access) -> io::Result<()> {
    let (gid, mode) = match access {
        Access::Everyone => (0, 0o755),
        Access::Group(gid) => (gid, 0o750),
    };
    let mut partial = to.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    remove_if_present(&partial)?;
    std::fs::copy(from, &partial)?;
    // owner and group first: the mode is never wider than asked for
    std::os::unix::fs::chown(&partial, Some(0), Some(gid))?;
    std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(mode))?;
    std::fs::rename(&partial, to)
}

/// Removes a copy [`install_copy`] made, and its folder once empty.
pub fn remove_copy(path: &Path) -> io::Result<()> {
    remove_if_present(path)?;
    let Some(dir) = path.parent() else { return Ok(()) };
    match std::fs::remove_dir(dir) {
        Err(err) if !matches!(err.kind(), io::ErrorKind::NotFound | io::ErrorKind::DirectoryNotEmpty) => {
            Err(err)
        }
        _ => Ok(()),
    }
}

/// The first folder on the way from `/` to `dir` that a user other than root
/// owns or may write to: whoever that is could replace a file in `dir`.
pub fn writable_by_others(dir: &Path) -> io::Result<Option<PathBuf>> {
    let dir = dir.canonicalize()?;
    let mut ancestors: Vec<&Path> = dir.ancestors().collect();
    ancestors.reverse();
    for folder in ancestors {
        let meta = std::fs::metadata(folder)?;
        // group-writable counts too: the group may have members other than root
        if meta.uid() != 0 || meta.mode() & 0o022 != 0 {
            return Ok(Some(folder.to_path_buf()));
        }
    }
    Ok(None)
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WIRESHARK_4_0: &str = "\
Temp:                \t/tmp
Personal configuration:\t/home/ann/.config/wireshark
Global configuration:\t/usr/share/wireshark
Personal Lua Plugins:\t/home/ann/.local/lib/wireshark/plugins
Global Lua Plugins:  \t/usr/lib/x86_64-linux-gnu/wireshark/plugins
Extcap path:         \t/usr/lib/x86_64-linux-gnu/wireshark/extcap
MaxMind database path:\t/usr/share/GeoIP
";

    const WIRESHARK_4_6: &str = "\
Personal configuration:\t/home/ann/.config/wireshark
Personal Lua Plugins:\t/home/ann/.local/lib/wireshark/plugins
Global Lua Plugins:\t/usr/lib/x86_64-linux-gnu/wireshark/plugins
Personal Extcap path:\t/home/ann/.local/lib/wireshark/extcap
Global Extcap path:\t/usr/libexec/wireshark/extcap
";

    #[test]
    fn wireshark_4_0_reads_the_personal_config_extcap_folder() {
        let folders = Folders::parse(WIRESHARK_4_0);
        assert_eq!(folders.personal_extcap, Some("/home/ann/.config/wireshark/extcap".into()));
        assert_eq!(folders.global_extcap, Some("/usr/lib/x86_64-linux-gnu/wireshark/extcap".into()));
        let plan = Plan::new(&folders, Scope::User).unwrap();
        assert_eq!(plan.lua_plugin(), PathBuf::from("/home/ann/.local/lib/wireshark/plugins/sockdump.lua"));
    }

    #[test]
    fn newer_wiresharks_name_both_extcap_folders() {
        let folders = Folders::parse(WIRESHARK_4_6);
        assert_eq!(folders.personal_extcap, Some("/home/ann/.local/lib/wireshark/extcap".into()));
        let plan = Plan::new(&folders, Scope::System).unwrap();
        assert_eq!(plan.extcap_link(), PathBuf::from("/usr/libexec/wireshark/extcap/sockdump"));
        assert!(Plan::new(&Folders::default(), Scope::User).is_err());
    }

    #[test]
    fn folders_others_can_write_are_found() {
        let scratch = Path::new("/tmp").join(format!("sockdump-owner-{}", std::process::id()));
        std::fs::create_dir_all(&scratch).unwrap();
        // /tmp is world-writable: sticky or not, it is not root's alone
        assert_eq!(writable_by_others(&scratch).unwrap(), Some(PathBuf::from("/tmp")));
        std::fs::remove_dir(&scratch).unwrap();
        assert_eq!(writable_by_others(Path::new("/usr/bin")).unwrap(), None);
        assert!(writable_by_others(Path::new("/no/such/folder")).is_err());
    }

    #[test]
    fn install_and_uninstall_in_a_scratch_folder() {
        let root = tempfile::tempdir().unwrap();
        let plan = Plan { extcap_dir: root.path().join("extcap"), lua_dir: root.path().join("lua") };
        plan.install(Path::new("/usr/bin/true"), "-- lua").unwrap();
        plan.install(Path::new("/usr/bin/false"), "-- lua 2").unwrap();
        assert_eq!(std::fs::read_link(plan.extcap_link()).unwrap(), PathBuf::from("/usr/bin/false"));
        assert_eq!(std::fs::read_to_string(plan.lua_plugin()).unwrap(), "-- lua 2");
        plan.uninstall().unwrap();
        plan.uninstall().unwrap();
        assert!(!plan.extcap_link().exists() && !plan.lua_plugin().exists());
    }
}
