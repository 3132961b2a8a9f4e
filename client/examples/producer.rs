//! Produce a few records three ways. Run a broker first (`cargo run --release -p keel-server`),
//! create the topic (`keel topic create orders --partitions 3`, or let this example do it),
//! then: `cargo run -p keel-client --example producer`.

use keel_client::{Admin, Producer, ProducerRecord};

#[tokio::main(flavor = "current_thread")]
async fn main() -> keel_client::Result<()> {
    let bootstrap = std::env::var("KEEL_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:7070".into());
    let admin = Admin::connect(&bootstrap).await?;
    if !admin.list_topics().await?.contains(&"orders".to_string()) {
        admin.create_topic("orders", 3, &[]).await?;
    }

    let producer = Producer::builder(bootstrap.as_str()).build().await?;

    // Synchronous: wait for the record to be stored (durably, with the default acks=all).
    let stored = producer
        .send(ProducerRecord::new("orders", "order #1").key("customer-42"))
        .await?;
    println!(
        "order #1 stored in partition {} at offset {}",
        stored.partition, stored.offset
    );

    // Asynchronous: keep many in flight, then collect the results.
    let mut deliveries = Vec::new();
    for n in 2..=100 {
        let record =
            ProducerRecord::new("orders", format!("order #{n}")).key(format!("customer-{}", n % 7));
        deliveries.push(producer.enqueue(record).await?);
    }
    for delivery in deliveries {
        delivery.await?;
    }

    // With a callback, and fire-and-forget.
    producer
        .send_with_callback(
            ProducerRecord::new("orders", "order #101"),
            |result| match result {
                Ok(stored) => println!("order #101 stored at offset {}", stored.offset),
                Err(e) => eprintln!("order #101 failed: {e}"),
            },
        )
        .await?;
    producer
        .send_and_forget(ProducerRecord::new("orders", "order #102"))
        .await?;

    producer.close().await; // delivers everything accepted
    println!("102 orders produced");
    Ok(())
}
