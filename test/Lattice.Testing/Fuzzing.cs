using System.Buffers.Binary;
using CsCheck;

namespace Lattice.Testing;

/// <summary>
/// Shared pieces of the property-based fuzz tests (<c>test/*/Fuzz/</c>, trait <c>Category=Fuzz</c>): the corpus kept in
/// the repository, byte-level mutations of real inputs, and one way to run a property with a fixed iteration count.
/// </summary>
/// <remarks>
/// Runs are bounded by iterations, not time, so a CI run is as long on a busy machine as on an idle one.
/// <c>LATTICE_FUZZ_SCALE</c> multiplies every count for a longer local run. A failure prints CsCheck's seed
/// (<c>CsCheck_Seed=…</c> reproduces it); the shrunk input then belongs in the corpus and in a regular test.
/// </remarks>
public static class Fuzzing
{
    /// <summary>The trait value: <c>[Trait("Category", Fuzzing.Category)]</c>, run with <c>--filter Category=Fuzz</c>.</summary>
    public const string Category = "Fuzz";

    /// <summary>Environment variable that multiplies every iteration count (an integer, default 1).</summary>
    public const string ScaleVariable = "LATTICE_FUZZ_SCALE";

    /// <summary><paramref name="iterations"/> times <see cref="ScaleVariable"/>.</summary>
    public static long Iterations(long iterations) =>
        long.TryParse(Environment.GetEnvironmentVariable(ScaleVariable), out var scale) && scale > 0 ? iterations * scale : iterations;

    /// <summary>
    /// Checks <paramref name="property"/> on <paramref name="iterations"/> generated values on one thread (the tests
    /// already run in parallel). CsCheck shrinks a failure and reports the seed that reproduces it.
    /// </summary>
    public static void Check<T>(Gen<T> gen, Action<T> property, long iterations, Func<T, string>? print = null) =>
        gen.Sample(property, iter: Iterations(iterations), threads: 1, print: print);

    /// <summary>The corpus directory of one target: <c>test/&lt;project&gt;/Fuzz/Corpus/&lt;target&gt;</c>.</summary>
    public static string CorpusDirectory(string project, string target) =>
        Path.Combine(RepoPaths.RepoRoot, "test", project, "Fuzz", "Corpus", target);

    /// <summary>Every file of a target's corpus, by name (sorted, so runs are repeatable).</summary>
    public static IReadOnlyList<CorpusFile> Corpus(string project, string target)
    {
        var directory = CorpusDirectory(project, target);
        var files = Directory.GetFiles(directory).Where(f => !f.EndsWith(".md", StringComparison.Ordinal)).Order(StringComparer.Ordinal).ToArray();
        if (files.Length == 0)
        {
            throw new InvalidOperationException($"The fuzz corpus '{directory}' is empty.");
        }
        return [.. files.Select(f => new CorpusFile(Path.GetFileName(f), File.ReadAllBytes(f)))];
    }

    /// <summary>Arbitrary bytes up to <paramref name="maxLength"/> long.</summary>
    public static Gen<byte[]> Bytes(int maxLength) => Gen.Byte.Array[0, maxLength];

    /// <summary>
    /// One of <paramref name="seeds"/> with 1 to <paramref name="maxEdits"/> byte-level edits: bit flips, random and
    /// boundary bytes (0, 0x7F, 0x80, 0xFF, and 0 / 0x7FFFFFFF / 0xFFFFFFFF as 32-bit lengths), deletions, duplicated
    /// and moved ranges, truncation. Edits keep most of a real input, so the parser gets past its first checks.
    /// </summary>
    public static Gen<byte[]> Mutations(IReadOnlyList<byte[]> seeds, int maxEdits = 6)
    {
        if (seeds.Count == 0)
        {
            throw new ArgumentException("No seeds to mutate.", nameof(seeds));
        }
        var edit = Gen.Select(Gen.Int[0, 8], Gen.Int[0, int.MaxValue], Gen.Int[0, int.MaxValue], Gen.Byte)
            .Select((kind, at, other, value) => new Edit(kind, at, other, value));
        return Gen.Select(Gen.Int[0, seeds.Count - 1], edit.Array[1, maxEdits])
            .Select((seed, edits) => Apply(seeds[seed], edits));
    }

    private readonly record struct Edit(int Kind, int At, int Other, byte Value);

    private static byte[] Apply(byte[] seed, Edit[] edits)
    {
        var bytes = new List<byte>(seed);
        Span<byte> word = stackalloc byte[4];
        foreach (var edit in edits)
        {
            if (bytes.Count == 0)
            {
                bytes.Add(edit.Value);
                continue;
            }
            var at = edit.At % bytes.Count;
            // Ranges stay short: a real parser's fields are a few bytes wide.
            var length = Math.Min(1 + (edit.Other % 64), bytes.Count - at);
            switch (edit.Kind)
            {
                case 0:
                    bytes[at] ^= (byte)(1 << (edit.Value & 7));
                    break;
                case 1:
                    bytes[at] = edit.Value;
                    break;
                case 2:
                    bytes[at] = (edit.Value & 3) switch { 0 => 0, 1 => 0x7F, 2 => 0x80, _ => 0xFF };
                    break;
                case 3:
                    if (at + 4 <= bytes.Count)
                    {
                        BinaryPrimitives.WriteUInt32LittleEndian(word, (edit.Value % 3) switch { 0 => 0u, 1 => 0x7FFFFFFFu, _ => 0xFFFFFFFFu });
                        if ((edit.Value & 0x80) != 0)
                        {
                            word.Reverse(); // big-endian fields (FLAC, MP3)
                        }
                        for (var i = 0; i < 4; i++)
                        {
                            bytes[at + i] = word[i];
                        }
                    }
                    break;
                case 4:
                    bytes.RemoveRange(at, length);
                    break;
                case 5:
                    bytes.InsertRange(at, bytes.GetRange(at, length));
                    break;
                case 6:
                    var to = edit.Other % bytes.Count;
                    var moved = bytes.GetRange(at, length);
                    bytes.RemoveRange(at, length);
                    bytes.InsertRange(Math.Min(to, bytes.Count), moved);
                    break;
                case 7:
                    bytes.RemoveRange(at, bytes.Count - at);
                    break;
                default:
                    bytes.Insert(at, edit.Value);
                    break;
            }
        }
        return [.. bytes];
    }

    /// <summary>Environment variable naming a directory where <see cref="Describe"/> saves each failing input whole.</summary>
    public const string SaveVariable = "LATTICE_FUZZ_SAVE";

    /// <summary>
    /// A short description of a failing input for the message: its length and first bytes in hex. With
    /// <see cref="SaveVariable"/> set, the input is also saved there (named by its hash), ready for the corpus.
    /// </summary>
    public static string Describe(byte[] bytes)
    {
        var saved = "";
        if (Environment.GetEnvironmentVariable(SaveVariable) is { Length: > 0 } directory)
        {
            Directory.CreateDirectory(directory);
            var path = Path.Combine(directory, Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(bytes))[..16] + ".bin");
            File.WriteAllBytes(path, bytes);
            saved = $" (saved as {path})";
        }
        return $"{bytes.Length} bytes{saved}: {Convert.ToHexString(bytes.AsSpan(0, Math.Min(bytes.Length, 96)))}{(bytes.Length > 96 ? "…" : "")}";
    }
}

/// <summary>One file of a fuzz corpus.</summary>
public sealed record CorpusFile(string Name, byte[] Bytes)
{
    public override string ToString() => Name;
}
