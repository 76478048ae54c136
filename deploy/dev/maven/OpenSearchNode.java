// A single throwaway OpenSearch node for the tests (start-opensearch.sh compiles and runs
// it): org.opensearch.node.Node with the netty4 HTTP/transport module and analysis-common
// loaded from the classpath, as a distribution's modules directory would (the constructor
// the test framework's MockNode uses, without MockNode's randomized-testing hooks).
// Settings come as key=value arguments; it runs until killed.
//
// With -Drowstream.test.tls.keystore=FILE (PKCS#12, password in rowstream.test.tls.password)
// the node also loads TestSecurityPlugin: the HTTP layer is OpenSearch's own
// SecureNetty4HttpServerTransport (http.type=netty4-secure) with an SSLEngine made from
// that keystore, and with -Drowstream.test.basic.auth=FILE (one line `user:password`)
// every REST request without that user's `Authorization: Basic` header is answered 401.
// The security plugin is not on Maven Central; this gives the real node TLS and basic
// auth for the sink's tests, nothing more (no roles, no transport TLS).
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyStore;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Collections;
import java.util.List;
import java.util.Optional;
import java.util.function.UnaryOperator;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLEngine;
import org.opensearch.analysis.common.CommonAnalysisPlugin;
import org.opensearch.common.logging.LogConfigurator;
import org.opensearch.common.settings.Settings;
import org.opensearch.common.util.concurrent.ThreadContext;
import org.opensearch.core.rest.RestStatus;
import org.opensearch.http.HttpServerTransport;
import org.opensearch.node.InternalSettingsPreparer;
import org.opensearch.node.Node;
import org.opensearch.plugins.ActionPlugin;
import org.opensearch.plugins.Plugin;
import org.opensearch.plugins.SecureHttpTransportSettingsProvider;
import org.opensearch.plugins.SecureSettingsFactory;
import org.opensearch.plugins.SecureTransportSettingsProvider;
import org.opensearch.plugins.TransportExceptionHandler;
import org.opensearch.rest.BytesRestResponse;
import org.opensearch.rest.RestHandler;
import org.opensearch.transport.Netty4Plugin;

public final class OpenSearchNode extends Node {
    private OpenSearchNode(Settings settings, List<Class<? extends Plugin>> plugins) {
        super(InternalSettingsPreparer.prepareEnvironment(settings, Collections.emptyMap(), null, () -> "node-1"),
              plugins, true);
    }

    public static void main(String[] args) throws Exception {
        Settings.Builder b = Settings.builder();
        for (String a : args) {
            int eq = a.indexOf('=');
            b.put(a.substring(0, eq), a.substring(eq + 1));
        }
        Settings settings = b.build();
        LogConfigurator.configureWithoutConfig(settings);
        List<Class<? extends Plugin>> plugins = new ArrayList<>(List.of(Netty4Plugin.class, CommonAnalysisPlugin.class));
        if (System.getProperty("rowstream.test.tls.keystore") != null) {
            plugins.add(TestSecurityPlugin.class);
        }
        new OpenSearchNode(settings, plugins).start();
        System.out.println("OpenSearch node started");
        Thread.currentThread().join();
    }

    /** Test-only TLS on the HTTP layer and basic authentication of REST requests. */
    public static final class TestSecurityPlugin extends Plugin implements ActionPlugin {
        private final SSLContext tls;
        /** The expected `Authorization` header, or null when no authentication is asked. */
        private final byte[] authorization;

        public TestSecurityPlugin() throws Exception {
            char[] pw = System.getProperty("rowstream.test.tls.password", "").toCharArray();
            KeyStore ks = KeyStore.getInstance("PKCS12");
            try (InputStream in = Files.newInputStream(Path.of(System.getProperty("rowstream.test.tls.keystore")))) {
                ks.load(in, pw);
            }
            KeyManagerFactory kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
            kmf.init(ks, pw);
            tls = SSLContext.getInstance("TLS");
            tls.init(kmf.getKeyManagers(), null, null);
            String authFile = System.getProperty("rowstream.test.basic.auth");
            if (authFile == null) {
                authorization = null;
            } else {
                String userPass = Files.readString(Path.of(authFile), StandardCharsets.UTF_8).trim();
                authorization = ("Basic " + Base64.getEncoder().encodeToString(userPass.getBytes(StandardCharsets.UTF_8)))
                    .getBytes(StandardCharsets.UTF_8);
            }
        }

        @Override
        public Optional<SecureSettingsFactory> getSecureSettingFactory(Settings settings) {
            return Optional.of(new SecureSettingsFactory() {
                @Override
                public Optional<SecureTransportSettingsProvider> getSecureTransportSettingsProvider(Settings s) {
                    return Optional.empty();
                }

                @Override
                public Optional<SecureHttpTransportSettingsProvider> getSecureHttpTransportSettingsProvider(Settings s) {
                    return Optional.of(new SecureHttpTransportSettingsProvider() {
                        @Override
                        public Optional<TransportExceptionHandler> buildHttpServerExceptionHandler(Settings s, HttpServerTransport t) {
                            return Optional.empty();
                        }

                        @Override
                        public Optional<SSLEngine> buildSecureHttpServerEngine(Settings s, HttpServerTransport t) {
                            SSLEngine e = tls.createSSLEngine();
                            e.setUseClientMode(false);
                            return Optional.of(e);
                        }
                    });
                }
            });
        }

        @Override
        public UnaryOperator<RestHandler> getRestHandlerWrapper(ThreadContext threadContext) {
            if (authorization == null) {
                return h -> h;
            }
            return h -> new RestHandler.Wrapper(h) {
                @Override
                public void handleRequest(org.opensearch.rest.RestRequest request, org.opensearch.rest.RestChannel channel,
                                          org.opensearch.client.node.NodeClient client) throws Exception {
                    String given = request.header("Authorization");
                    if (given != null && MessageDigest.isEqual(given.getBytes(StandardCharsets.UTF_8), authorization)) {
                        super.handleRequest(request, channel, client);
                        return;
                    }
                    BytesRestResponse r = new BytesRestResponse(RestStatus.UNAUTHORIZED,
                        "application/json; charset=UTF-8",
                        "{\"error\":{\"type\":\"security_exception\",\"reason\":\"missing or wrong authentication credentials\"},\"status\":401}");
                    r.addHeader("WWW-Authenticate", "Basic realm=\"rowstream-test\"");
                    channel.sendResponse(r);
                }
            };
        }
    }
}
