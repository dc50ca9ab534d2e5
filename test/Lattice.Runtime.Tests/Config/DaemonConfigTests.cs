using Lattice.Runtime.Config;

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
        Assert.Equal("http://127.0.0.1:8080", config.GatewayUrl);
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
    [InlineData("[[engines]]\nkind = \"llama\"\n[[engines]]\nkind = \"gpt\"\n", "engines[1].kind", 4, "unknown engine 'gpt'")]
    [InlineData("[[engines]]\nkind = \"llama\"\n  [[engines.models]]\n  name = \"a\"\n", "engines[0].models[0].path", 3, "needs the model file's path")]
    [InlineData("[[engines]]\nkind = \"openai-compatible\"\n", "engines[0].base_url", 1, "needs an absolute base_url")]
    public void A_bad_config_names_the_key_and_the_line(string text, string key, int line, string problem)
    {
        var ex = Assert.Throws<ConfigException>(() => DaemonConfig.Parse(text, "config.toml"));
        Assert.Equal(key, ex.Key);
        Assert.Equal(line, ex.Line);
        Assert.Contains(problem, ex.Message, StringComparison.Ordinal);
        Assert.StartsWith($"config.toml:{line}: '{key}'", ex.Message, StringComparison.Ordinal);
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
