// A single throwaway OpenSearch node for the tests (start-opensearch.sh compiles and runs
// it): org.opensearch.node.Node with the netty4 HTTP/transport module and analysis-common
// loaded from the classpath, as a distribution's modules directory would (the constructor
// the test framework's MockNode uses, without MockNode's randomized-testing hooks).
// Settings come as key=value arguments; it runs until killed.
import java.util.Collections;
import java.util.List;
import org.opensearch.analysis.common.CommonAnalysisPlugin;
import org.opensearch.common.logging.LogConfigurator;
import org.opensearch.common.settings.Settings;
import org.opensearch.node.InternalSettingsPreparer;
import org.opensearch.node.Node;
import org.opensearch.transport.Netty4Plugin;

public final class OpenSearchNode extends Node {
    private OpenSearchNode(Settings settings) {
        super(InternalSettingsPreparer.prepareEnvironment(settings, Collections.emptyMap(), null, () -> "node-1"),
              List.of(Netty4Plugin.class, CommonAnalysisPlugin.class), true);
    }

    public static void main(String[] args) throws Exception {
        Settings.Builder b = Settings.builder();
        for (String a : args) {
            int eq = a.indexOf('=');
            b.put(a.substring(0, eq), a.substring(eq + 1));
        }
        Settings settings = b.build();
        LogConfigurator.configureWithoutConfig(settings);
        new OpenSearchNode(settings).start();
        System.out.println("OpenSearch node started");
        Thread.currentThread().join();
    }
}
