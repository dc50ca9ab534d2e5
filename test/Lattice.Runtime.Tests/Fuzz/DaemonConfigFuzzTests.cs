using System.Text;
using CsCheck;
using Lattice.Runtime.Config;
using Lattice.Testing;

namespace Lattice.Runtime.Tests.Fuzz;

/// <summary>
/// <see cref="DaemonConfig.Parse"/> on mutations of real configs (the example in docs/daemon.md and the corpus) and
/// on TOML assembled from the config's own keys and awkward values: a config is read, or refused with a
/// <see cref="ConfigException"/> that names a line of the file, never with another exception.
/// </summary>
[Trait("Category", Fuzzing.Category)]
public sealed class DaemonConfigFuzzTests
{
    private const string Project = "Lattice.Runtime.Tests";

    private static readonly byte[][] Seeds = [.. Fuzzing.Corpus(Project, "config").Where(f => f.Bytes.Length < 4096).Select(f => f.Bytes)];

    private static readonly string[] Headers =
        ["[daemon]", "[gateway]", "[[engines]]", "[[engines.models]]", "[engines]", "[engines.models]", "[[daemon]]", "[[]]", "[ ]", "[a.b]", "[[engines.models.x]]"];

    private static readonly string[] Keys =
        ["concurrency", "data_dir", "url", "urls", "kind", "base_url", "api_key_env", "models", "name", "path", "task", "context_size", "chunks",
         "chunk_delay_ms", "ignore_prompt", "engines", "daemon", "\"quoted key\"", "a.b", "x"];

    private static readonly string[] Values =
        ["1", "0", "-1", "1024", "1025", "9223372036854775807", "99999999999999999999", "1.5", "nan", "inf", "true", "false", "\"fixed\"",
         "\"llama\"", "\"openai-compatible\"", "\"http://127.0.0.1:1/v1\"", "\"ftp://x\"", "\"~/m.gguf\"", "\"\"", "'literal'",
         "\"\"\"multi\nline\"\"\"", "[]", "[1, \"a\"]",
         "[\"http://a:1\", \"http://b:1/v1\"]", "[\"http://a:1\", \"http://a:1\"]", "\"http://u:p@a:1\"", "{}", "{ name = \"m\" }", "[{ name = \"m\" }]", "1979-05-27T07:32:00Z", "\"\\ud800\""];

    private static readonly Gen<string> Line = Gen.Frequency(
        (1, Gen.Int[0, Headers.Length - 1].Select(i => Headers[i])),
        (4, Gen.Select(Gen.Int[0, Keys.Length - 1], Gen.Int[0, Values.Length - 1]).Select((k, v) => $"{Keys[k]} = {Values[v]}")),
        (1, Gen.Const("")),
        (1, Gen.String[0, 12]));

    private static readonly Gen<string> Assembled = Line.Array[0, 24].Select(lines => string.Join('\n', lines));

    private static readonly Gen<string> Mutated = Fuzzing.Mutations(Seeds).Select(bytes => Encoding.UTF8.GetString(bytes));

    public static TheoryData<string> CorpusFiles => new(Fuzzing.Corpus(Project, "config").Select(f => f.Name));

    [Fact]
    public void Any_config_text_is_read_or_refused_with_a_config_error() =>
        Fuzzing.Check(Gen.Frequency((1, Assembled), (1, Mutated)), CheckParse, iterations: 10_000);

    [Theory]
    [MemberData(nameof(CorpusFiles))]
    public void The_corpus_replays(string name) =>
        CheckParse(Encoding.UTF8.GetString(Fuzzing.Corpus(Project, "config").Single(f => f.Name == name).Bytes));

    /// <summary>
    /// Found by the fuzzer (seed 9jfre3d6pIc1): an escape in a quoted key followed by a character Tomlyn cannot describe
    /// made its lexer throw ArgumentOutOfRangeException instead of a parse error. The seed replays that very input.
    /// </summary>
    [Fact]
    public void The_input_of_seed_9jfre3d6pIc1_is_refused_with_a_config_error() =>
        Gen.Frequency((1, Assembled), (1, Mutated)).Sample(CheckParse, seed: "9jfre3d6pIc1", iter: 1, threads: 1);

    internal static void CheckParse(string text)
    {
        try
        {
            var config = DaemonConfig.Parse(text, "config.toml");
            Assert.InRange(config.Concurrency, 1, Math.Max(1024, Environment.ProcessorCount));
            Assert.All(config.Engines, e => Assert.Contains(e.Kind, DaemonConfig.EngineKinds));
        }
        catch (ConfigException e)
        {
            Assert.StartsWith("config.toml", e.Message, StringComparison.Ordinal);
            if (e.Line is { } line)
            {
                Assert.InRange(line, 1, text.Split('\n').Length);
            }
        }
    }
}
