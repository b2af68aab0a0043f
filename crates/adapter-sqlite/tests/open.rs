//! Opening the file: creation, migrations, and clear errors for everything that is not ours.

mod common;

use bg_run_core::{Error, NewTask, TaskQueue};
use bg_run_sqlite::{SqliteOptions, SqliteQueue, TaskStore, SCHEMA_VERSION};
use common::TempDb;

fn config_error(result: Result<SqliteQueue, Error>) -> String {
    match result {
        Err(Error::Config(message)) => {
            assert!(!message.contains('\n'), "an open error is one line: {message}");
            message
        }
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_fresh_file_is_created_migrated_and_reopens_with_its_tasks() {
    let db = TempDb::new();
    assert!(!db.path.exists());
    let queue = db.open().await;
    assert_eq!(queue.path(), db.path.as_path());
    assert_eq!(queue.queue_name(), "default");
    let id = queue.enqueue(NewTask::new("survives a reopen")).await.expect("enqueue");
    drop(queue);

    let conn = rusqlite::Connection::open(&db.path).expect("open the file directly");
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).expect("user_version");
    assert_eq!(version, SCHEMA_VERSION);
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).expect("journal_mode");
    assert_eq!(mode, "wal");
    drop(conn);

    let reopened = SqliteQueue::open(db.options().create(false)).await.expect("reopen");
    assert_eq!(reopened.get(&id).await.expect("get").title, "survives a reopen");
    let again = SqliteQueue::open_blocking(db.options()).expect("open outside a runtime's async context");
    assert_eq!(again.list(None).await.expect("list").len(), 1);
}

#[tokio::test]
async fn a_missing_file_without_create_asks_for_a_task_first() {
    let db = TempDb::new();
    let message = config_error(SqliteQueue::open(db.options().create(false)).await);
    assert!(message.contains(&db.path.display().to_string()), "{message}");
    assert!(message.contains("bg-run add"), "{message}");
    assert!(!db.path.exists(), "nothing is created");
}

#[tokio::test]
async fn a_garbage_file_is_named_in_a_clear_error() {
    let db = TempDb::new();
    std::fs::create_dir_all(db.path.parent().expect("parent")).expect("mkdir");
    std::fs::write(&db.path, "this is a shopping list, not a database\n".repeat(200)).expect("write");
    let message = config_error(SqliteQueue::open(db.options()).await);
    assert!(message.contains(&db.path.display().to_string()), "{message}");
    assert!(message.contains("not a SQLite database"), "{message}");
}

#[tokio::test]
async fn a_directory_is_not_a_database() {
    let db = TempDb::new();
    std::fs::create_dir_all(&db.path).expect("mkdir");
    let message = config_error(SqliteQueue::open(db.options()).await);
    assert!(message.contains("is a directory"), "{message}");
}

#[tokio::test]
async fn another_programs_database_is_left_alone() {
    let db = TempDb::new();
    std::fs::create_dir_all(db.path.parent().expect("parent")).expect("mkdir");
    let conn = rusqlite::Connection::open(&db.path).expect("create");
    conn.execute_batch("CREATE TABLE recipes (name TEXT); INSERT INTO recipes VALUES ('soup');").expect("fill");
    drop(conn);
    let message = config_error(SqliteQueue::open(db.options()).await);
    assert!(message.contains("did not create"), "{message}");
    let conn = rusqlite::Connection::open(&db.path).expect("reopen");
    let tables: i64 = conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0)).expect("count");
    assert_eq!(tables, 1, "nothing was added to the other program's database");
}

#[tokio::test]
async fn a_newer_schema_asks_for_an_upgrade() {
    let db = TempDb::new();
    drop(db.open().await);
    let conn = rusqlite::Connection::open(&db.path).expect("open");
    conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1).expect("bump");
    drop(conn);
    let message = config_error(SqliteQueue::open(db.options()).await);
    assert!(message.contains("newer bg-run") && message.contains("upgrade"), "{message}");
}

#[tokio::test]
async fn bad_options_are_refused() {
    let db = TempDb::new();
    let message = config_error(SqliteQueue::open(db.options().queue("  ")).await);
    assert!(message.contains("queue name"), "{message}");
    let message = config_error(SqliteQueue::open(db.options().labels(["agent", ""])).await);
    assert!(message.contains("empty label"), "{message}");
}

#[test]
fn default_options_use_the_documented_path_and_queue() {
    let options = SqliteOptions::default();
    assert_eq!(options.path, std::path::PathBuf::from(".bg-run/bg-run.db"));
    assert_eq!(options.queue, "default");
    assert!(options.labels.is_empty());
    assert!(options.create);
}
