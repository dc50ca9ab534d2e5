using Lattice.Runtime.Config;
using Lattice.Runtime.Connection;
using Lattice.Runtime.Hosting;

namespace Lattice.Runtime.Tests.Config;

public sealed class DaemonConfigTests
{
    [Fact]
    public void A_full_config_is_read()
    {
        var config = DaemonConfig.Parse("""
            [daemon]
            concurrency = 3
            data_dir = "/tmp/lattice-x"

            [gateway]
            url = "http://127.0.0.1:8080"

            [[engines]]
            kind = "llama"
              [[engines.models]]
              name = "stories"
              path = "/m/stories.gguf"
              context_size = 256
              plain_completion = true

            [[engines]]
            kind = "openai-compatible"
            base_url = "http://127.0.0.1:11434/v1"
              [[engines.models]]
              name = "llama3.2"
              [[engines.models]]
              name = "nomic"
              task = "embeddings"
            """, "config.toml");

        Assert.Equal(3, config.Concurrency);
        Assert.Equal("/tmp/lattice-x", config.DataDirectory);
        Assert.Equal(["http://127.0.0.1:8080"], config.GatewayUrls);
        Assert.Equal(2, config.Engines.Count);
        Assert.Equal(new ModelConfig("stories", "/m/stories.gguf", null, 256, PlainCompletion: true), config.Engines[0].Models[0]);
        Assert.False(config.Engines[1].Models[0].PlainCompletion);
        Assert.Equal("embeddings", config.Engines[1].Models[1].Task);
    }

    [Theory]
    [InlineData("[daemon]\nconcurrency = \"four\"\n", "daemon.concurrency", 2, "expected an integer")]
    [InlineData("[daemon]\nconcurency = 4\n", "daemon.concurency", 2, "unknown key")]
    [InlineData("[daemon]\nconcurrency = 0\n", "daemon.concurrency", 2, "between 1 and 1024")]
    [InlineData("[gateway]\nurl = \"ftp://x\"\n", "gateway.url", 2, "http(s) URL")]
    [InlineData("[gateway]\nurl = \"http://a:1\"\nurls = [\"http://b:1\"]\n", "gateway.urls", 3, "set either url or urls, not both")]
    [InlineData("[gateway]\nurls = []\n", "gateway.urls", 2, "must list at least one URL")]
    [InlineData("[gateway]\nurls = \"http://a:1\"\n", "gateway.urls", 2, "expected an array of strings, not a string")]
    [InlineData("[gateway]\nurls = [\"http://a:1\", 2]\n", "gateway.urls", 2, "expected an array of strings, not one holding an integer")]
    [InlineData("[gateway]\nurls = [\"http://a:1\", \"a.example:8080\"]\n", "gateway.urls", 2, "expected an http(s) URL, not 'a.example:8080'")]
    [InlineData("[gateway]\nurls = [\"http://a:1\", \"ws://b:1\"]\n", "gateway.urls", 2, "expected an http(s) URL, not 'ws://b:1'")]
    [InlineData("[gateway]\nurls = [\"http://a:1\", \"http://a:1/v1\"]\n", "gateway.urls", 2, "lists http://a:1 twice")]
    [InlineData("[gateway]\nurl = \"http://admin:secret@a:1\"\n", "gateway.url", 2, "carries no user name or password")]
    [InlineData("[[engines]]\nkind = \"llama\"\n[[engines]]\nkind = \"gpt\"\n", "engines[1].kind", 4, "unknown engine 'gpt'")]
    [InlineData("[[engines]]\nkind = \"llama\"\n  [[engines.models]]\n  name = \"a\"\n", "engines[0].models[0].path", 3, "needs the model file's path")]
    [InlineData("[[engines]]\nkind = \"openai-compatible\"\n", "engines[0].base_url", 1, "needs an absolute base_url")]
    [InlineData("[daemon]\nmetrics = 9464\n", "daemon.metrics", 2, "expected a string, not an integer")]
    [InlineData("[daemon]\nmetrics = \"9464\"\n", "daemon.metrics", 2, "expected an IP address and port such as \"127.0.0.1:9464\" or \"[::1]:9464\", not \"9464\"")]
    [InlineData("[daemon]\nmetrics = \"127.0.0.1\"\n", "daemon.metrics", 2, "expected an IP address and port")]
    [InlineData("[daemon]\nmetrics = \"::1\"\n", "daemon.metrics", 2, "expected an IP address and port")]
    [InlineData("[daemon]\nmetrics = \"metrics.internal:9464\"\n", "daemon.metrics", 2, "expected an IP address and port")]
    [InlineData("[daemon]\nmetrics = \"127.0.0.1:70000\"\n", "daemon.metrics", 2, "expected an IP address and port")]
    [InlineData("[daemon]\nmetrics = \"127.0.0.1:0\"\n", "daemon.metrics", 2, "needs a port between 1 and 65535, not 0")]
    [InlineData("[daemon]\nconcurrency = 2\nmetrics = \"0.0.0.0:9464\"\n", "daemon.metrics", 3,
        "0.0.0.0 is not a loopback address: the metrics endpoint has no authentication, so it listens on 127.0.0.1 or [::1] unless metrics_allow_remote = true")]
    [InlineData("[daemon]\nmetrics = \"192.168.1.20:9464\"\n", "daemon.metrics", 2, "192.168.1.20 is not a loopback address")]
    [InlineData("[daemon]\nmetrics_allow_remote = true\n", "daemon.metrics_allow_remote", 2, "only applies with metrics = \"address:port\"")]
    [InlineData("[daemon]\nmetrics = \"0.0.0.0:9464\"\nmetrics_allow_remote = \"yes\"\n", "daemon.metrics_allow_remote", 3, "expected true or false, not a string")]
    public void A_bad_config_names_the_key_and_the_line(string text, string key, int line, string problem)
    {
        var ex = Assert.Throws<ConfigException>(() => DaemonConfig.Parse(text, "config.toml"));
        Assert.Equal(key, ex.Key);
        Assert.Equal(line, ex.Line);
        Assert.Contains(problem, ex.Message, StringComparison.Ordinal);
        Assert.StartsWith($"config.toml:{line}: '{key}'", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Several_gateway_urls_are_read_as_origins_in_their_order()
    {
        var config = DaemonConfig.Parse("""
            [gateway]
            urls = ["http://node-b.internal:8080", "https://node-a.internal/v1", "http://127.0.0.1:8081/"]
            """, "config.toml");

        Assert.Equal(["http://node-b.internal:8080", "https://node-a.internal", "http://127.0.0.1:8081"], config.GatewayUrls);
    }

    [Fact]
    public void Without_gateway_urls_the_daemon_uses_the_ones_it_was_paired_with()
    {
        var credentials = new RuntimeCredentials("http://a:1", "lat_x", "lrt_x", ["http://a:1", "http://b:1"]);
        Assert.Empty(DaemonConfig.Parse("[daemon]\nconcurrency = 2\n", "config.toml").GatewayUrls);
        Assert.Equal(["http://a:1", "http://b:1"], DaemonRunner.GatewaysFor(DaemonConfig.Parse("", "config.toml"), credentials));
        Assert.Equal(["http://c:1"], DaemonRunner.GatewaysFor(DaemonConfig.Parse("[gateway]\nurl = \"http://c:1\"\n", "config.toml"), credentials));
        Assert.Equal(["http://a:1"], new RuntimeCredentials("http://a:1", "lat_x", "lrt_x").Endpoints);
    }

    [Theory]
    [InlineData("127.0.0.1:9464", "127.0.0.1:9464")]
    [InlineData("localhost:9100", "127.0.0.1:9100")]
    [InlineData("[::1]:9464", "[::1]:9464")]
    [InlineData("127.0.0.2:1", "127.0.0.2:1")]
    public void The_metrics_endpoint_takes_a_loopback_address_and_port(string value, string endpoint)
    {
        var config = DaemonConfig.Parse($"[daemon]\nmetrics = \"{value}\"\n", "config.toml");
        Assert.Equal(endpoint, config.Metrics?.ToString());
    }

    [Fact]
    public void The_metrics_endpoint_is_off_by_default_and_reaches_the_network_only_when_told()
    {
        Assert.Null(DaemonConfig.Parse("[daemon]\nconcurrency = 2\n", "config.toml").Metrics);
        Assert.Null(DaemonConfig.Parse("", "config.toml").Metrics);
        var remote = DaemonConfig.Parse("[daemon]\nmetrics = \"0.0.0.0:9464\"\nmetrics_allow_remote = true\n", "config.toml");
        Assert.Equal("0.0.0.0:9464", remote.Metrics?.ToString());
    }

    [Fact]
    public void A_syntax_error_names_the_line()
    {
        var ex = Assert.Throws<ConfigException>(() => DaemonConfig.Parse("[daemon]\nconcurrency = = 4\n", "config.toml"));
        Assert.Equal(2, ex.Line);
        Assert.StartsWith("config.toml:2: ", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_missing_file_is_an_error_only_when_named()
    {
        var path = Path.Combine(Path.GetTempPath(), Guid.NewGuid().ToString("N"), "config.toml");
        Assert.Empty(DaemonConfig.Load(path, mustExist: false).Engines);
        Assert.Throws<ConfigException>(() => DaemonConfig.Load(path, mustExist: true));
    }
}
