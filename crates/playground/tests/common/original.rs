//! Clients that behave like the original system's: a TCP client in packet
//! framing (each command written without a line ending, each reply one read)
//! and a way to store a token in memcached the way the original's servers
//! did (under the token itself, with the owner's `ip:port`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::kafka_config;

/// How long a reply may take before a test gives up on it. The original's
/// clients wait 50 ms; tests wait longer so a loaded machine cannot fail
/// them, and never assert on timing.
pub const REPLY_WAIT: Duration = Duration::from_secs(5);
/// How long a test waits to be sure that nothing arrives.
pub const SILENCE: Duration = Duration::from_millis(300);

/// A TCP client in the original's packet framing.
pub struct PacketClient {
    pub stream: TcpStream,
}

impl PacketClient {
    /// Connects to 127.0.0.1:`port`.
    pub fn connect(port: u16) -> PacketClient {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_nodelay(true).unwrap();
        PacketClient { stream }
    }

    /// The client's own address, as the server sees it.
    pub fn local_addr(&self) -> SocketAddr {
        self.stream.local_addr().unwrap()
    }

    /// Writes one command as it is, with no line ending.
    pub fn send(&mut self, command: &str) {
        self.stream.write_all(command.as_bytes()).unwrap();
    }

    /// One read within `wait`: `None` if nothing came (or the server closed).
    pub fn read_within(&mut self, wait: Duration) -> Option<String> {
        self.stream.set_read_timeout(Some(wait)).unwrap();
        let mut buf = [0u8; 4096];
        match self.stream.read(&mut buf) {
            Ok(0) | Err(_) => None,
            Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        }
    }

    /// Sends `command` and returns the one read that answers it.
    pub fn ask(&mut self, command: &str) -> String {
        self.send(command);
        self.read_within(REPLY_WAIT).unwrap_or_else(|| panic!("no reply to {command:?}"))
    }

    /// Sends `command` and checks that no reply comes.
    pub fn ask_nothing(&mut self, command: &str) {
        self.send(command);
        assert_eq!(self.read_within(SILENCE), None, "expected no reply to {command:?}");
    }
}

/// Stores `token` in the memcached at `host:port` as the original's `login`
/// did: under the token itself, the owner's `ip:port` as value, 20 minutes.
pub fn store_token_like_the_original(host: &str, port: &str, token: &str, owner: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let mut client = async_memcached::Client::new(format!("tcp://{host}:{port}")).await.unwrap();
        use async_memcached::AsciiProtocol;
        client.set(token, owner, Some(1200), None).await.unwrap();
    });
}

/// What memcached holds under `key`, read directly.
pub fn memcached_get(host: &str, port: &str, key: &str) -> Option<String> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let mut client = async_memcached::Client::new(format!("tcp://{host}:{port}")).await.unwrap();
        use async_memcached::AsciiProtocol;
        let value = client.get(key).await.unwrap()?;
        value.data.map(|d| String::from_utf8_lossy(&d).into_owned())
    })
}

/// Every record of `topic` so far, as (key, value), read from the start.
pub fn kafka_records(brokers: &str, topic: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    let consumer: BaseConsumer =
        kafka_config(brokers).set("group.id", format!("test-{}", uuid::Uuid::new_v4())).create().unwrap();
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..md.topics()[0].partitions().len() as i32 {
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut records = vec![];
    // Until the topic has been quiet for a second.
    while let Some(Ok(m)) = consumer.poll(Duration::from_secs(1)) {
        records.push((m.key().unwrap_or_default().to_vec(), m.payload().unwrap_or_default().to_vec()));
    }
    records
}

/// Publishes a broadcast as an original instance did: key = the sender's
/// address, value = the message bytes.
pub fn publish_like_the_original(brokers: &str, topic: &str, sender: &str, message: &str) {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let producer: BaseProducer = kafka_config(brokers).create().unwrap();
    producer.send(BaseRecord::to(topic).key(sender).payload(message)).map_err(|(e, _)| e).unwrap();
    producer.flush(Duration::from_secs(10)).unwrap();
}
