// The Apache Camel peer of deploy/bench/compare: Kafka to HTTP with
// camel-main, camel-kafka and camel-http, configured for at-least-once with
// the same retry intent as cpn-relay's defaults. Run with Java's source
// launcher against the jars pom.xml lists:
//
//   java -cp 'libs/*' CamelRelay.java BROKERS TOPIC GROUP URL CONSUMERS
//
// (deploy/bench/compare compiles it with javac first, so compiling is not in
// its CPU figures.)
//
// At-least-once: Kafka's auto commit is off; each record's offset is
// committed (asynchronously, Camel's DefaultKafkaManualAsyncCommitFactory)
// only after its POST returned 2xx or after it went to the dead-letter topic
// (TOPIC.dlq); breakOnFirstError makes a record Camel could not finish be
// polled again instead of skipped. Retries: 10 attempts in all, 200 ms
// doubling up to 30 s (cpn-relay's [retry] defaults). One Kafka consumer per
// CONSUMERS (the partition count: one per partition, Camel's way to run
// partitions in parallel); each POSTs synchronously. The session timeout is
// cpn-relay's default (10 s; kafka-clients' own is 45 s), so the recovery
// figures compare the engines, not their defaults.
import org.apache.camel.Exchange;
import org.apache.camel.builder.RouteBuilder;
import org.apache.camel.component.kafka.KafkaConstants;
import org.apache.camel.component.kafka.consumer.KafkaManualCommit;
import org.apache.camel.main.Main;

public class CamelRelay {
    public static void main(String[] args) throws Exception {
        if (args.length != 5) {
            System.err.println("usage: CamelRelay BROKERS TOPIC GROUP URL CONSUMERS");
            System.exit(2);
        }
        String brokers = args[0], topic = args[1], group = args[2], url = args[3];
        int consumers = Integer.parseInt(args[4]);
        Main main = new Main();
        main.configure().withShutdownTimeout(10);
        main.configure().addRoutesBuilder(new RouteBuilder() {
            @Override
            public void configure() {
                errorHandler(deadLetterChannel("direct:dead-letter")
                        .maximumRedeliveries(9)
                        .redeliveryDelay(200)
                        .useExponentialBackOff()
                        .backOffMultiplier(2)
                        .maximumRedeliveryDelay(30000));
                from("kafka:" + topic
                        + "?brokers=" + brokers
                        + "&groupId=" + group
                        + "&autoOffsetReset=earliest"
                        + "&autoCommitEnable=false"
                        + "&allowManualCommit=true"
                        + "&kafkaManualCommitFactory=#class:org.apache.camel.component.kafka.consumer.DefaultKafkaManualAsyncCommitFactory"
                        + "&breakOnFirstError=true"
                        + "&sessionTimeoutMs=10000"
                        + "&consumersCount=" + consumers)
                        .routeId("cpn-peer")
                        // Keep what the commit needs; send no Kafka or Camel
                        // header to the target but the ones OCS sends.
                        .process(e -> {
                            e.setProperty("commit", e.getMessage().getHeader(KafkaConstants.MANUAL_COMMIT));
                            Object guid = e.getMessage().getHeader("cpn.guid");
                            e.setProperty("guid", guid instanceof byte[] b ? new String(b) : String.valueOf(guid));
                        })
                        .removeHeaders("*")
                        .setHeader(Exchange.HTTP_METHOD, constant("POST"))
                        .setHeader(Exchange.CONTENT_TYPE, constant("application/json"))
                        .setHeader("ETag", exchangeProperty("guid"))
                        .to(url + "?throwExceptionOnFailure=true")
                        .process(e -> e.getProperty("commit", KafkaManualCommit.class).commit());
                // What exhausted its attempts goes to TOPIC.dlq, then its
                // offset is committed like a delivered one.
                from("direct:dead-letter")
                        .to("kafka:" + topic + ".dlq?brokers=" + brokers)
                        .process(e -> e.getProperty("commit", KafkaManualCommit.class).commit());
            }
        });
        main.run();
    }
}
