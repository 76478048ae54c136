// ConfluentAvroRead BOOTSTRAP TOPIC REGISTRY_URL TIMEOUT_SECS
//
// Reads every record of TOPIC with Confluent's own KafkaAvroDeserializer (key and
// value, generic records, logical-type conversions on) against the Schema Registry at
// REGISTRY_URL, and prints one JSON line per record on stdout:
//   {"partition":P,"offset":O,"key":K,"value":V,"value_schema":"<full name>"}
// K and V are the decoded datums as JSON: records as objects (fields in schema order),
// strings and enum symbols as strings, decimals as plain decimal strings, bytes as
// uppercase hex, null (a tombstone's value) as null. Reads each partition from the
// beginning up to the end offset it had when reading began; exits 1 (with the
// deserializer's exception) on the first record that does not decode, 2 on a timeout.
// Started by deploy/dev/confluent/run.sh; used by tests/kafka_avro.rs.

import com.fasterxml.jackson.databind.ObjectMapper;
import io.confluent.kafka.serializers.KafkaAvroDeserializer;
import java.math.BigDecimal;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericRecord;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;

public class ConfluentAvroRead {
  public static void main(String[] args) throws Exception {
    if (args.length != 4) {
      System.err.println("usage: ConfluentAvroRead BOOTSTRAP TOPIC REGISTRY_URL TIMEOUT_SECS");
      System.exit(64);
    }
    String topic = args[1];
    long deadline = System.nanoTime() + Long.parseLong(args[3]) * 1_000_000_000L;
    Properties p = new Properties();
    p.put("bootstrap.servers", args[0]);
    p.put("group.id", "confluent-avro-read-" + System.nanoTime());
    p.put("enable.auto.commit", "false");
    p.put("auto.offset.reset", "earliest");
    p.put("key.deserializer", KafkaAvroDeserializer.class.getName());
    p.put("value.deserializer", KafkaAvroDeserializer.class.getName());
    p.put("schema.registry.url", args[2]);
    p.put("specific.avro.reader", "false");
    p.put("avro.use.logical.type.converters", "true");
    ObjectMapper json = new ObjectMapper();
    try (KafkaConsumer<Object, Object> c = new KafkaConsumer<>(p)) {
      List<TopicPartition> parts = new ArrayList<>();
      for (PartitionInfo i : c.partitionsFor(topic, Duration.ofSeconds(30))) {
        parts.add(new TopicPartition(topic, i.partition()));
      }
      if (parts.isEmpty()) {
        System.err.println("topic " + topic + " has no partitions");
        System.exit(1);
      }
      c.assign(parts);
      c.seekToBeginning(parts);
      Map<TopicPartition, Long> end = c.endOffsets(parts, Duration.ofSeconds(30));
      while (true) {
        boolean done = true;
        for (TopicPartition tp : parts) {
          if (c.position(tp, Duration.ofSeconds(30)) < end.get(tp)) {
            done = false;
          }
        }
        if (done) {
          break;
        }
        if (System.nanoTime() > deadline) {
          System.err.println("timed out reading " + topic + " up to " + end);
          System.exit(2);
        }
        for (ConsumerRecord<Object, Object> r : c.poll(Duration.ofMillis(500))) {
          if (r.offset() >= end.get(new TopicPartition(r.topic(), r.partition()))) {
            continue;
          }
          Map<String, Object> line = new LinkedHashMap<>();
          line.put("partition", r.partition());
          line.put("offset", r.offset());
          line.put("key", plain(r.key()));
          line.put("value", plain(r.value()));
          line.put(
              "value_schema",
              r.value() instanceof GenericRecord g ? g.getSchema().getFullName() : null);
          System.out.println(json.writeValueAsString(line));
        }
      }
    }
    System.out.flush();
  }

  /** A decoded Avro datum as plain Java values Jackson writes as JSON. */
  static Object plain(Object v) {
    if (v == null) {
      return null;
    }
    if (v instanceof GenericRecord r) {
      Map<String, Object> m = new LinkedHashMap<>();
      for (Schema.Field f : r.getSchema().getFields()) {
        m.put(f.name(), plain(r.get(f.pos())));
      }
      return m;
    }
    if (v instanceof CharSequence || v instanceof GenericData.EnumSymbol) {
      return v.toString();
    }
    if (v instanceof BigDecimal d) {
      return d.toPlainString();
    }
    if (v instanceof ByteBuffer b) {
      ByteBuffer d = b.duplicate();
      byte[] a = new byte[d.remaining()];
      d.get(a);
      return hex(a);
    }
    if (v instanceof GenericData.Fixed f) {
      return hex(f.bytes());
    }
    if (v instanceof byte[] a) {
      return hex(a);
    }
    if (v instanceof Map<?, ?> m) {
      Map<String, Object> out = new LinkedHashMap<>();
      for (Map.Entry<?, ?> e : m.entrySet()) {
        out.put(e.getKey().toString(), plain(e.getValue()));
      }
      return out;
    }
    if (v instanceof Collection<?> c) {
      List<Object> out = new ArrayList<>();
      for (Object x : c) {
        out.add(plain(x));
      }
      return out;
    }
    if (v instanceof Number || v instanceof Boolean) {
      return v;
    }
    // Logical types converted to java.time values (none in rowstream's schemas today).
    return v.toString();
  }

  static String hex(byte[] a) {
    StringBuilder s = new StringBuilder(a.length * 2);
    for (byte x : a) {
      s.append(String.format("%02X", x));
    }
    return s.toString();
  }
}
