//! `berth commit`: a container's changes as a new image.

use crate::client::Client;
use anyhow::Result;
use berth_api::Query;
use clap::Args;
use hyper::Method;

#[derive(Debug, Args)]
pub struct CommitArgs {
    /// Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")
    #[arg(short = 'a', long = "author")]
    author: Option<String>,
    /// Apply Dockerfile instruction to the created image
    #[arg(short = 'c', long = "change")]
    change: Vec<String>,
    /// Commit message
    #[arg(short = 'm', long = "message")]
    message: Option<String>,
    /// Pause container during commit
    #[arg(short = 'p', long = "pause", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pause: bool,
    #[arg(value_name = "CONTAINER")]
    container: String,
    #[arg(value_name = "REPOSITORY[:TAG]")]
    reference: Option<String>,
}

pub async fn commit(client: &Client, args: &CommitArgs) -> Result<()> {
    let mut q = Query::default();
    q.push("container", args.container.clone());
    if let Some(r) = &args.reference {
        let (repo, tag) = super::images::split_tag(r);
        q.push("repo", repo);
        if tag != "<none>" {
            q.push("tag", tag);
        }
    }
    q.push("comment", args.message.clone().unwrap_or_default());
    q.push("author", args.author.clone().unwrap_or_default());
    if !args.pause {
        q.push("pause", "0");
    }
    for c in &args.change {
        q.push("changes", c.clone());
    }
    let v: serde_json::Value = client.json(Method::POST, "/commit", &q).await?;
    println!("{}", v["Id"].as_str().unwrap_or_default());
    Ok(())
}
