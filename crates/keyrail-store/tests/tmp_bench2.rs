use keyrail_store::testing::TempPostgres;
use sqlx::{AssertSqlSafe, Connection};
use std::time::Instant;

#[tokio::test]
async fn bench_params() {
    let pg = TempPostgres::create().await.unwrap();
    let mut conn = sqlx::PgConnection::connect(&pg.url).await.unwrap();
    sqlx::raw_sql("CREATE TABLE t (h TEXT PRIMARY KEY)")
        .execute(&mut conn)
        .await
        .unwrap();
    for n in [100usize, 200, 230, 240, 250, 300] {
        let list: Vec<String> = (1..=n).map(|i| format!("${i}")).collect();
        let sql = format!("SELECT h FROM t WHERE h IN ({})", list.join(", "));
        for round in 0..3 {
            let s = Instant::now();
            let mut q = sqlx::query_scalar::<_, String>(AssertSqlSafe(sql.clone()));
            for i in 0..n {
                q = q.bind(format!("{i:064}"));
            }
            let _r: Vec<String> = q.fetch_all(&mut conn).await.unwrap();
            eprintln!("n={n} round {round}: {:?}", s.elapsed());
        }
    }
    drop(conn);
    pg.drop_db().await;
}
