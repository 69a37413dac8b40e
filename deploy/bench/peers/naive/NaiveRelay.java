// The floor of deploy/bench/compare: the relay most teams write first. One
// thread polls, POSTs each record and waits for the reply, then commits that
// record's offset synchronously before the next one. Kafka's own client
// (kafka-clients, from the local broker's jars) and the JDK's HttpClient;
// run with Java's source launcher:
//
//   java -cp 'deploy/kafka/.cache/kafka-*/libs/*' NaiveRelay.java BROKERS TOPIC GROUP URL
//
// (deploy/bench/compare compiles it with javac first, so compiling is not in
// its CPU figures.)
//
// Retries: 10 attempts, 200 ms doubling up to 30 s, then it logs the record
// and goes on (a naive relay has no dead-letter topic: that record is lost).
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

public class NaiveRelay {
    public static void main(String[] args) throws Exception {
        if (args.length != 4) {
            System.err.println("usage: NaiveRelay BROKERS TOPIC GROUP URL");
            System.exit(2);
        }
        Properties p = new Properties();
        p.put("bootstrap.servers", args[0]);
        p.put("group.id", args[2]);
        p.put("enable.auto.commit", "false");
        p.put("auto.offset.reset", "earliest");
        // cpn-relay's default (kafka-clients' own is 45 s), for the recovery figures
        p.put("session.timeout.ms", "10000");
        p.put("key.deserializer", ByteArrayDeserializer.class.getName());
        p.put("value.deserializer", ByteArrayDeserializer.class.getName());
        URI target = URI.create(args[3]);
        HttpClient http = HttpClient.newBuilder()
                .version(HttpClient.Version.HTTP_1_1)
                .connectTimeout(Duration.ofSeconds(10))
                .build();
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(p)) {
            consumer.subscribe(List.of(args[1]));
            while (true) {
                for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(500))) {
                    Header guid = r.headers().lastHeader("cpn.guid");
                    HttpRequest.Builder req = HttpRequest.newBuilder(target)
                            .timeout(Duration.ofSeconds(30))
                            .header("Content-Type", "application/json")
                            .POST(HttpRequest.BodyPublishers.ofByteArray(r.value()));
                    if (guid != null) {
                        req.header("ETag", new String(guid.value()));
                    }
                    post(http, req.build(), r);
                    consumer.commitSync(Map.of(new TopicPartition(r.topic(), r.partition()),
                            new OffsetAndMetadata(r.offset() + 1)));
                }
            }
        }
    }

    static void post(HttpClient http, HttpRequest req, ConsumerRecord<byte[], byte[]> r)
            throws InterruptedException {
        long delay = 200;
        for (int attempt = 1; attempt <= 10; attempt++) {
            try {
                int status = http.send(req, HttpResponse.BodyHandlers.discarding()).statusCode();
                if (status / 100 == 2) {
                    return;
                }
                System.err.printf("attempt %d of %s-%d@%d: HTTP %d%n", attempt, r.topic(), r.partition(), r.offset(), status);
            } catch (java.io.IOException e) {
                System.err.printf("attempt %d of %s-%d@%d: %s%n", attempt, r.topic(), r.partition(), r.offset(), e);
            }
            Thread.sleep(delay);
            delay = Math.min(delay * 2, 30000);
        }
        System.err.printf("gave up on %s-%d@%d%n", r.topic(), r.partition(), r.offset());
    }
}
