//! `keyrail backup` and `keyrail restore`: the whole database to an archive and back, through
//! `keyrail_store::backup`. Progress and reminders go to stderr; stdout gets one JSON line.

use std::path::Path;

use keyrail_server::config::Config;

/// Where this configuration keeps its master key, for the reminder.
fn master_key_place(config: &Config) -> String {
    if !config.master_key_file.as_os_str().is_empty() {
        format!(
            "the file {} (master_key_file)",
            config.master_key_file.display()
        )
    } else if config.master_key.is_empty() {
        format!(
            "{} (or KEYRAIL_MASTER_KEY)",
            config.data_dir.join("master.key").display()
        )
    } else {
        "the configured master_key / KEYRAIL_MASTER_KEY".to_owned()
    }
}

pub async fn backup(config: Config, out: &Path) -> Result<(), String> {
    let store = keyrail_store::describe(&config.database_url, &config.data_dir);
    eprintln!("keyrail backup: reading {store} in one snapshot");
    let summary = keyrail_store::backup::backup(
        &config.database_url,
        &config.data_dir,
        out,
        |table, rows| eprintln!("keyrail backup: {table}: {rows} rows"),
    )
    .await
    .map_err(|e| format!("backup failed: {e}"))?;
    let total: u64 = summary.tables.iter().map(|(_, n)| n).sum();
    eprintln!(
        "keyrail backup: wrote {} ({total} rows, schema version {})",
        out.display(),
        summary.schema_version
    );
    eprintln!(
        "keyrail backup: the master key is NOT included in the backup. Keep a copy of it with \
         the backup ({}): without it the sealed secrets in the archive (recoverable keys, TOTP \
         secrets, signing keys, app secrets) cannot be opened.",
        master_key_place(&config)
    );
    println!(
        "{}",
        serde_json::json!({
            "file": out.display().to_string(),
            "schema_version": summary.schema_version,
            "rows": total,
            "tables": summary.tables.iter().map(|(t, n)| (t.clone(), serde_json::Value::from(*n))).collect::<serde_json::Map<_, _>>(),
        })
    );
    Ok(())
}

pub async fn restore(config: Config, from: &Path, force: bool) -> Result<(), String> {
    let store = keyrail_store::describe(&config.database_url, &config.data_dir);
    eprintln!("keyrail restore: checking {}", from.display());
    let checked =
        keyrail_store::backup::verify(from).map_err(|e| format!("restore refused: {e}"))?;
    eprintln!(
        "keyrail restore: archive ok (made on {}, schema version {}, checksum verified); \
         restoring into {store}",
        checked.backend, checked.schema_version
    );
    keyrail_server::bootstrap::ensure_data_dir(&config.data_dir)
        .map_err(|e| format!("data directory {}: {e}", config.data_dir.display()))?;
    let summary = keyrail_store::backup::restore(
        &config.database_url,
        &config.data_dir,
        from,
        force,
        |table, rows| eprintln!("keyrail restore: {table}: {rows} rows"),
    )
    .await
    .map_err(|e| format!("restore refused or failed (nothing written): {e}"))?;
    let total: u64 = summary.tables.iter().map(|(_, n)| n).sum();
    eprintln!(
        "keyrail restore: done, {total} rows. Start keyrail with the master key of the server \
         the backup came from ({}).",
        master_key_place(&config)
    );
    println!(
        "{}",
        serde_json::json!({
            "restored": total,
            "store": store,
            "schema_version": summary.schema_version,
        })
    );
    Ok(())
}
