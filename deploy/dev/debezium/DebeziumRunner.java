// DebeziumRunner: runs Debezium's MySQL connector in the embedded engine and prints every
// record as one line {"topic":..,"key":..,"value":..} on stdout, key and value serialized by
// Kafka Connect's JsonConverter with schemas.enable=false (what a Kafka Connect worker
// configured that way writes to Kafka; tombstones have "value":null). Offsets and schema
// history are in memory: each run starts with snapshot.mode=no_data (schema only) and
// streams from the server's current binlog position.
//
// Once the binlog reader is connected it prints {"ready":true} (so a caller knows changes
// it makes from then on are captured); it stops after MAX_RECORDS records or TIMEOUT_SECS.
// At the end it prints on stderr the record count and the time from the first record to
// the last (a benchmark's figure without the JVM start and the connect).
//
// -Drunner.buffered=true: stdout through a 64 KiB buffer, flushed at the end, instead of a
// flush per line (for benches/peers.sh, where nobody waits for a line; rowstream tail
// buffers its output the same way).
//
// Usage: java -cp 'classes:lib/*' DebeziumRunner HOST PORT USER PASSWORD DB PREFIX MAX_RECORDS TIMEOUT_SECS [KEY=VALUE...]
// (each KEY=VALUE sets or overrides a connector property, e.g. provide.transaction.metadata=true)
// (deploy/dev/debezium/run.sh fetches the jars, compiles this file and runs it.)
import io.debezium.embedded.Connect;
import io.debezium.engine.DebeziumEngine;
import io.debezium.engine.RecordChangeEvent;
import io.debezium.engine.format.ChangeEventFormat;
import java.io.BufferedOutputStream;
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.PrintStream;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import javax.management.MBeanServer;
import javax.management.ObjectName;
import org.apache.kafka.connect.json.JsonConverter;
import org.apache.kafka.connect.source.SourceRecord;

public final class DebeziumRunner {
    public static void main(String[] args) throws Exception {
        if (args.length < 8) {
            System.err.println("usage: DebeziumRunner HOST PORT USER PASSWORD DB PREFIX MAX_RECORDS TIMEOUT_SECS [KEY=VALUE...]");
            System.exit(2);
        }
        // The binlog client logs every connection step through java.util.logging.
        java.util.logging.Logger.getLogger("").setLevel(java.util.logging.Level.WARNING);
        final String prefix = args[5];
        final int max = Integer.parseInt(args[6]);
        final long timeout = Long.parseLong(args[7]);

        Properties p = new Properties();
        p.setProperty("name", "rowstream-compat");
        p.setProperty("connector.class", "io.debezium.connector.mysql.MySqlConnector");
        p.setProperty("offset.storage", "org.apache.kafka.connect.storage.MemoryOffsetBackingStore");
        p.setProperty("offset.flush.interval.ms", "60000");
        p.setProperty("schema.history.internal", "io.debezium.relational.history.MemorySchemaHistory");
        p.setProperty("database.hostname", args[0]);
        p.setProperty("database.port", args[1]);
        p.setProperty("database.user", args[2]);
        p.setProperty("database.password", args[3]);
        p.setProperty("database.server.id", Integer.toString(5_400_000 + (int) (ProcessHandle.current().pid() % 100_000)));
        p.setProperty("database.include.list", args[4]);
        p.setProperty("topic.prefix", prefix);
        p.setProperty("snapshot.mode", "no_data");
        p.setProperty("snapshot.locking.mode", "none");
        p.setProperty("driver.allowPublicKeyRetrieval", "true");
        // Everything else at Debezium's defaults: that is what rowstream's mode claims.
        for (int i = 8; i < args.length; i++) {
            int eq = args[i].indexOf('=');
            p.setProperty(args[i].substring(0, eq), args[i].substring(eq + 1));
        }

        JsonConverter keys = new JsonConverter();
        keys.configure(Map.of("schemas.enable", "false"), true);
        JsonConverter values = new JsonConverter();
        values.configure(Map.of("schemas.enable", "false"), false);

        boolean buffered = Boolean.getBoolean("runner.buffered");
        PrintStream out = buffered
                ? new PrintStream(new BufferedOutputStream(new FileOutputStream(FileDescriptor.out), 1 << 16), false, StandardCharsets.UTF_8)
                : new PrintStream(new FileOutputStream(FileDescriptor.out), true, StandardCharsets.UTF_8);
        CountDownLatch done = new CountDownLatch(1);
        AtomicInteger count = new AtomicInteger();
        AtomicLong first = new AtomicLong();
        AtomicLong last = new AtomicLong();
        int[] exit = {0};

        DebeziumEngine<RecordChangeEvent<SourceRecord>> engine = DebeziumEngine
                .create(ChangeEventFormat.of(Connect.class))
                .using(p)
                .notifying(ev -> {
                    SourceRecord r = ev.record();
                    if (first.get() == 0) {
                        first.set(System.nanoTime());
                    }
                    byte[] k = r.key() == null ? null : keys.fromConnectData(r.topic(), r.keySchema(), r.key());
                    byte[] v = r.value() == null ? null : values.fromConnectData(r.topic(), r.valueSchema(), r.value());
                    StringBuilder line = new StringBuilder();
                    line.append("{\"topic\":\"").append(r.topic()).append("\",\"key\":")
                            .append(k == null ? "null" : new String(k, StandardCharsets.UTF_8))
                            .append(",\"value\":")
                            .append(v == null ? "null" : new String(v, StandardCharsets.UTF_8))
                            .append('}');
                    synchronized (out) {
                        out.println(line);
                    }
                    if (count.incrementAndGet() >= max) {
                        last.compareAndSet(0, System.nanoTime());
                        done.countDown();
                    }
                })
                .using((success, message, error) -> {
                    if (!success) {
                        System.err.println("debezium engine stopped: " + message);
                        if (error != null) {
                            error.printStackTrace();
                        }
                        exit[0] = 1;
                    }
                    done.countDown();
                })
                .build();
        ExecutorService executor = Executors.newSingleThreadExecutor();
        executor.execute(engine);

        MBeanServer mbeans = ManagementFactory.getPlatformMBeanServer();
        ObjectName streaming = new ObjectName("debezium.mysql:type=connector-metrics,context=streaming,*");
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(timeout);
        boolean ready = false;
        while (!ready && done.getCount() > 0 && System.nanoTime() < deadline) {
            for (ObjectName n : mbeans.queryNames(streaming, null)) {
                try {
                    if (Boolean.TRUE.equals(mbeans.getAttribute(n, "Connected"))) {
                        ready = true;
                    }
                }
                catch (Exception e) {
                    // not registered yet
                }
            }
            if (!ready) {
                Thread.sleep(100);
            }
        }
        if (ready) {
            synchronized (out) {
                out.println("{\"ready\":true}");
            }
        }
        long left = deadline - System.nanoTime();
        if (!done.await(Math.max(left, 0), TimeUnit.NANOSECONDS)) {
            System.err.println("timed out after " + timeout + "s with " + count.get() + " of " + max + " records");
            exit[0] = 3;
        }
        // Closing may block on a connector that failed; never outlive the timeout by much.
        Thread halt = new Thread(() -> {
            try {
                Thread.sleep(15_000);
            }
            catch (InterruptedException e) {
                return;
            }
            Runtime.getRuntime().halt(exit[0] == 0 ? 4 : exit[0]);
        });
        halt.setDaemon(true);
        halt.start();
        try {
            engine.close();
        }
        catch (IllegalStateException e) {
            // already stopped by a failure (reported above)
        }
        executor.shutdown();
        executor.awaitTermination(10, TimeUnit.SECONDS);
        out.flush();
        if (last.get() != 0) {
            System.err.printf("records %d, first record to last %.3f s%n", count.get(), (last.get() - first.get()) / 1e9);
        }
        System.exit(exit[0]);
    }
}
