package playground.opensearch;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import org.apache.logging.log4j.LogManager;
import org.apache.logging.log4j.core.LoggerContext;
import org.apache.logging.log4j.core.config.Configurator;
import org.opensearch.common.logging.LogConfigurator;
import org.opensearch.common.settings.Settings;
import org.opensearch.common.unit.TimeValue;
import org.opensearch.env.Environment;
import org.opensearch.node.InternalSettingsPreparer;
import org.opensearch.node.Node;
import org.opensearch.plugins.Plugin;
import org.opensearch.transport.Netty4Plugin;

/**
 * Starts one OpenSearch node (single-node discovery, Netty4 HTTP and transport on a
 * loopback address) from the jars on the classpath, without a distribution.
 *
 * <pre>
 * java -cp 'opensearch-launcher.jar:lib/*' playground.opensearch.Launcher \
 *     --home DIR --data DIR [--logs DIR] [--host 127.0.0.1] [--http-port 9200]
 *     [--transport-port 9300] [--cluster-name NAME] [--node-name NAME]
 *     [--default-replicas 0|N|keep] [--plugin CLASS]... [-Ekey=value]...
 *     [--exit-after-start]
 * </pre>
 *
 * Ports may also come from the system properties {@code opensearch.http.port} and
 * {@code opensearch.transport.port}. The node is closed by a shutdown hook, so SIGTERM
 * (or SIGINT) stops it cleanly. After start the persistent cluster setting
 * {@code cluster.default_number_of_replicas} is set to {@code --default-replicas} (0 unless
 * told otherwise; {@code keep} leaves it alone) so that indices created without an explicit
 * replica count are green on one node. {@code --exit-after-start} stops the node as soon as
 * it has started (to record a class-data-sharing archive of the classes start-up loads). Exit status: 0 after a clean stop, 1 when it cannot
 * start, 2 on bad arguments.
 */
public final class Launcher {

    /** A node whose plugins are classes on the classpath instead of a plugins directory. */
    static final class EmbeddedNode extends Node {
        EmbeddedNode(Environment environment, Collection<Class<? extends Plugin>> plugins) {
            super(environment, plugins, true);
        }
    }

    /** Written to HOME/config/log4j2.properties at every start: everything to stdout. */
    private static final String DEFAULT_LOG4J2 = String.join(
        "\n",
        "status = error",
        "appender.console.type = Console",
        "appender.console.name = console",
        "appender.console.target = SYSTEM_OUT",
        "appender.console.layout.type = PatternLayout",
        "appender.console.layout.pattern = [%d{ISO8601}][%-5p][%-25c{1.}] [%node_name]%marker %m%n",
        "rootLogger.level = info",
        "rootLogger.appenderRef.console.ref = console",
        ""
    );

    private Launcher() {}

    public static void main(String[] args) {
        Map<String, String> opts = new LinkedHashMap<>();
        opts.put("host", "127.0.0.1");
        opts.put("http-port", System.getProperty("opensearch.http.port", "9200"));
        opts.put("transport-port", System.getProperty("opensearch.transport.port", "9300"));
        opts.put("cluster-name", "playground");
        opts.put("node-name", "playground-node");
        opts.put("default-replicas", "0");
        List<String> pluginClasses = new ArrayList<>();
        boolean exitAfterStart = false;
        Settings.Builder extra = Settings.builder();

        for (int i = 0; i < args.length; i++) {
            String arg = args[i];
            if (arg.startsWith("-E")) {
                String kv = arg.substring(2);
                int eq = kv.indexOf('=');
                if (eq <= 0) {
                    usage("bad setting '" + arg + "', expected -Ekey=value");
                }
                extra.put(kv.substring(0, eq), kv.substring(eq + 1));
            } else if (arg.equals("--exit-after-start")) {
                exitAfterStart = true;
            } else if (arg.equals("-h") || arg.equals("--help")) {
                usage(null);
            } else if (arg.startsWith("--")) {
                String name = arg.substring(2);
                String value;
                int eq = name.indexOf('=');
                if (eq >= 0) {
                    value = name.substring(eq + 1);
                    name = name.substring(0, eq);
                } else if (i + 1 < args.length) {
                    value = args[++i];
                } else {
                    usage("missing value for " + arg);
                    return;
                }
                switch (name) {
                    case "home", "data", "logs", "host", "http-port", "transport-port", "cluster-name", "node-name",
                        "default-replicas" ->
                        opts.put(name, value);
                    case "plugin" -> pluginClasses.add(value);
                    default -> usage("unknown option " + arg);
                }
            } else {
                usage("unexpected argument '" + arg + "'");
            }
        }
        if (!opts.containsKey("home")) {
            usage("--home is required");
        }
        Path home = Paths.get(opts.get("home")).toAbsolutePath().normalize();
        Path data = Paths.get(opts.getOrDefault("data", home.resolve("data").toString())).toAbsolutePath().normalize();
        Path logs = Paths.get(opts.getOrDefault("logs", home.resolve("logs").toString())).toAbsolutePath().normalize();
        int httpPort = port(opts.get("http-port"), "http-port");
        int transportPort = port(opts.get("transport-port"), "transport-port");
        String defaultReplicas = opts.get("default-replicas").trim();
        if (!defaultReplicas.equals("keep") && !defaultReplicas.matches("[0-9]+")) {
            usage("--default-replicas must be a number or 'keep', got '" + defaultReplicas + "'");
        }

        final Node node;
        try {
            Path config = home.resolve("config");
            Files.createDirectories(config);
            Files.createDirectories(data);
            Files.createDirectories(logs);
            Files.createDirectories(home.resolve("plugins"));
            Files.writeString(config.resolve("log4j2.properties"), DEFAULT_LOG4J2, StandardCharsets.UTF_8);

            Settings settings = Settings.builder()
                .put("path.home", home.toString())
                .put("path.data", data.toString())
                .put("path.logs", logs.toString())
                .put("cluster.name", opts.get("cluster-name"))
                .put("node.name", opts.get("node-name"))
                .put("network.host", opts.get("host"))
                .put("http.port", httpPort)
                .put("transport.port", transportPort)
                .put("http.type", "netty4")
                .put("transport.type", "netty4")
                .put("discovery.type", "single-node")
                // A data directory on a nearly full disk must not turn indices read-only.
                .put("cluster.routing.allocation.disk.threshold_enabled", false)
                .put("bootstrap.memory_lock", false)
                .put(extra.build())
                .build();

            Environment environment = InternalSettingsPreparer.prepareEnvironment(
                settings, Collections.emptyMap(), config, () -> opts.get("node-name"));
            // The %node_name converter needs the name before log4j reads its configuration.
            LogConfigurator.setNodeName(opts.get("node-name"));
            LogConfigurator.configure(environment);

            List<Class<? extends Plugin>> plugins = new ArrayList<>();
            plugins.add(Netty4Plugin.class);
            for (String cls : pluginClasses) {
                plugins.add(Class.forName(cls).asSubclass(Plugin.class));
            }

            node = new EmbeddedNode(environment, plugins);
        } catch (Throwable t) {
            fail("cannot create the OpenSearch node", t);
            return;
        }

        CountDownLatch stopped = new CountDownLatch(1);
        Thread hook = new Thread(() -> {
            try {
                node.close();
                if (!node.awaitClose(30, TimeUnit.SECONDS)) {
                    System.err.println("opensearch-launcher: node did not close within 30 s");
                }
            } catch (IOException | InterruptedException e) {
                System.err.println("opensearch-launcher: error while closing the node: " + e);
            } finally {
                stopped.countDown();
                shutdownLogging();
            }
        }, "opensearch-launcher-shutdown");
        Runtime.getRuntime().addShutdownHook(hook);

        try {
            node.start();
        } catch (Throwable t) {
            fail("cannot start the OpenSearch node", t);
            return;
        }
        if (!defaultReplicas.equals("keep")) {
            // One node can never hold a replica: with the usual default of 1 every index
            // keeps the cluster yellow. cluster.default_number_of_replicas is read from the
            // cluster metadata only (a node setting is ignored), so store it there.
            try {
                node.client()
                    .admin()
                    .cluster()
                    .prepareUpdateSettings()
                    .setPersistentSettings(Settings.builder().put("cluster.default_number_of_replicas", defaultReplicas))
                    .get(TimeValue.timeValueSeconds(60));
            } catch (Throwable t) {
                fail("cannot set cluster.default_number_of_replicas", t);
                return;
            }
        }
        System.out.println("opensearch-launcher: node started, http://" + opts.get("host") + ":" + httpPort);
        if (exitAfterStart) {
            // Used to record a class-data-sharing archive (-XX:ArchiveClassesAtExit).
            System.exit(0);
        }

        // The node's threads may all be daemons: keep the JVM alive until the hook ran.
        Thread keepAlive = new Thread(() -> {
            try {
                stopped.await();
            } catch (InterruptedException ignored) {
                Thread.currentThread().interrupt();
            }
        }, "opensearch-launcher-keepalive");
        keepAlive.setDaemon(false);
        keepAlive.start();
    }

    private static int port(String value, String name) {
        try {
            int p = Integer.parseInt(value.trim());
            if (p < 0 || p > 65535) {
                throw new NumberFormatException();
            }
            return p;
        } catch (NumberFormatException e) {
            usage("--" + name + " must be a port number, got '" + value + "'");
            return -1;
        }
    }

    private static void shutdownLogging() {
        try {
            Configurator.shutdown((LoggerContext) LogManager.getContext(false));
        } catch (Throwable ignored) {
            // Logging may never have been configured.
        }
    }

    private static void fail(String what, Throwable t) {
        System.err.println("opensearch-launcher: " + what + ": " + t);
        t.printStackTrace(System.err);
        // Runs the shutdown hook (if registered), which closes whatever was started.
        System.exit(1);
    }

    private static void usage(String error) {
        if (error != null) {
            System.err.println("opensearch-launcher: " + error);
        }
        System.err.println(
            "usage: Launcher --home DIR [--data DIR] [--logs DIR] [--host ADDR] [--http-port N]\n"
                + "                [--transport-port N] [--cluster-name NAME] [--node-name NAME]\n"
                + "                [--default-replicas 0|N|keep] [--plugin CLASS]... [-Ekey=value]...\n"
                + "                [--exit-after-start]");
        System.exit(error == null ? 0 : 2);
    }
}
