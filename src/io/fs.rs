//! `type = "fs"`: one file per partition under `base_dir`.

use std::path::PathBuf;

use super::{Data, FsConfig, InputContext, IoManager, Loaded, OutputContext, ResourceCx, Stored};

pub struct FsManager {
    pub base_dir: PathBuf,
    pub format: super::Format,
}

impl FsManager {
    pub fn new(config: FsConfig, cx: &ResourceCx) -> anyhow::Result<Self> {
        let base_dir = match &config.base_dir {
            Some(d) => cx.project_root.join(d),
            None => cx.state_dir.join("storage"),
        };
        Ok(FsManager {
            base_dir,
            format: config.format,
        })
    }
}

impl IoManager for FsManager {
    fn handle_output(&self, ctx: &OutputContext, data: Data) -> anyhow::Result<Stored> {
        let _ = (ctx, data);
        anyhow::bail!("fs is not implemented yet")
    }

    fn load_input(&self, ctx: &InputContext) -> anyhow::Result<Loaded> {
        let _ = ctx;
        anyhow::bail!("fs is not implemented yet")
    }

    fn exists(&self, ctx: &OutputContext) -> anyhow::Result<bool> {
        let _ = ctx;
        anyhow::bail!("fs is not implemented yet")
    }
}
