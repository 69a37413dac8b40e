// The partition Apache Kafka's Java producer picks for a key: one key per
// line on stdin (UTF-8), one partition per line on stdout. Run as a
// single-file program with the kafka-clients jar on the class path:
//   java -cp 'libs/*' JavaPartitions.java NUM_PARTITIONS
// Used by tests/tests/producer_roundtrip.rs to check that cpn-producer and
// Java producers place every chain in the same partition.

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import org.apache.kafka.clients.producer.internals.BuiltInPartitioner;

public class JavaPartitions {
    public static void main(String[] args) throws Exception {
        int partitions = Integer.parseInt(args[0]);
        BufferedReader in =
                new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String key;
        while ((key = in.readLine()) != null) {
            byte[] bytes = key.getBytes(StandardCharsets.UTF_8);
            System.out.println(BuiltInPartitioner.partitionForKey(bytes, partitions));
        }
    }
}
