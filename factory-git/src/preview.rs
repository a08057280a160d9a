//! What a merge would do, found without changing the repository: `git merge-tree --write-tree`
//! makes the merge in memory and on the object store only, and even those objects go to a
//! scratch directory (the repository's own objects are reached as an alternate), so no ref,
//! checkout, index or object of the repository changes.

use std::ffi::OsString;

use factory_core::ports::VcsError;

use crate::cleanup::alternate_objects;
use crate::read;
use crate::repo::GitRepo;

impl GitRepo {
    /// See [`Vcs::merge_conflicts`](factory_core::ports::Vcs::merge_conflicts).
    pub(crate) async fn three_way_conflicts(
        &self,
        rev: &str,
        into: &str,
    ) -> Result<Vec<String>, VcsError> {
        let (rev, into) = (rev.to_owned(), into.to_owned());
        let (theirs, ours) = self
            .read_main(move |repo| {
                Ok((
                    read::resolve_commit(repo, &rev)?,
                    read::resolve_commit(repo, &into)?,
                ))
            })
            .await?;
        let scratch = tempfile::Builder::new()
            .prefix("factory-merge-preview-")
            .tempdir()
            .map_err(|source| VcsError::Io {
                context: "creating a scratch object directory".to_owned(),
                source,
            })?;
        let env = [
            (
                "GIT_OBJECT_DIRECTORY",
                scratch.path().as_os_str().to_owned(),
            ),
            (
                "GIT_ALTERNATE_OBJECT_DIRECTORIES",
                alternate_objects(&self.common_dir.join("objects")),
            ),
        ];
        let (ours, theirs) = (ours.to_string(), theirs.to_string());
        let args: [OsString; 7] = [
            "merge-tree".into(),
            "--write-tree".into(),
            "--name-only".into(),
            "--no-messages".into(),
            "-z".into(),
            ours.into(),
            theirs.into(),
        ];
        let out = self
            .git
            .run_with_env(&self.main_checkout(), args, &env)
            .await?;
        match out.code {
            // Clean: only the tree id.
            Some(0) => Ok(Vec::new()),
            // Conflicts: the tree id, then each conflicted path.
            Some(1) => {
                let mut files: Vec<String> = out.nul_separated().into_iter().skip(1).collect();
                files.sort();
                files.dedup();
                Ok(files)
            }
            _ => Err(out.into_error()),
        }
    }
}
