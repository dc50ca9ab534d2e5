using System.Globalization;

namespace Lattice.Bench;

/// <summary>
/// What a process's resident set is made of, from <c>/proc/&lt;pid&gt;/status</c> and <c>/proc/&lt;pid&gt;/smaps</c>
/// (Linux), in bytes. <c>status</c> splits VmRSS into anonymous, file-backed and shared-memory pages; <c>smaps</c> says
/// which mapping each resident page is in, and the mappings are sorted into what they hold:
/// <list type="bullet">
/// <item><see cref="Code"/>: <c>memfd:doublemapper</c> — the runtime's executable memory (JIT-compiled code, stubs,
/// precode), which .NET maps twice from a memfd (W^X), so it counts as shared memory.</item>
/// <item><see cref="DataFiles"/>: mappings of files under the data directory (the usage journal, SQLite's <c>-shm</c>
/// and, were memory-mapped I/O on, its database); <see cref="Binaries"/>: every other file (assemblies, native
/// libraries).</item>
/// <item><see cref="Malloc"/>: the C allocator's memory — <c>[heap]</c> (glibc's main arena) and the other arenas'
/// heaps (anonymous mappings at a 64 MiB boundary that, with their reserved tail, fill exactly 64 MiB): SQLite's page
/// caches and statements, OpenSSL, the runtime's own native allocations.</item>
/// <item><see cref="Stacks"/>: anonymous mappings right above a one-page guard (thread stacks).</item>
/// <item><see cref="OtherAnon"/>: every other anonymous page — the GC heap and the runtime's data structures.</item>
/// </list>
/// </summary>
internal sealed record ProcessMemory(long Rss, long Anon, long File, long Shmem, long Code, long DataFiles, long Binaries, long Malloc, long Stacks, long OtherAnon)
{
    private const long ArenaSize = 64L << 20;
    private const long Page = 4096;

    /// <summary>The breakdown of <paramref name="pid"/>'s resident set, or null when the process is gone.</summary>
    public static ProcessMemory? Read(int pid, string dataDir)
    {
        try
        {
            long rss = 0, anon = 0, file = 0, shmem = 0;
            foreach (var line in System.IO.File.ReadLines($"/proc/{pid}/status"))
            {
                if (Kb(line, "VmRSS:") is { } a) { rss = a; }
                else if (Kb(line, "RssAnon:") is { } b) { anon = b; }
                else if (Kb(line, "RssFile:") is { } c) { file = c; }
                else if (Kb(line, "RssShmem:") is { } d) { shmem = d; }
            }
            var maps = ReadSmaps(pid);
            long code = 0, data = 0, binaries = 0, malloc = 0, stacks = 0, other = 0;
            var prefix = Path.GetFullPath(dataDir).TrimEnd('/') + "/";
            for (var i = 0; i < maps.Count; i++)
            {
                var m = maps[i];
                if (m.Rss == 0)
                {
                    continue;
                }
                if (m.Name.StartsWith("/memfd:doublemapper", StringComparison.Ordinal))
                {
                    code += m.Rss;
                }
                else if (m.Name.StartsWith('/'))
                {
                    if (m.Name.StartsWith(prefix, StringComparison.Ordinal)) { data += m.Rss; } else { binaries += m.Rss; }
                }
                else if (m.Name == "[heap]" || IsArenaHeap(maps, i))
                {
                    malloc += m.Rss;
                }
                else if (m.Name.Length == 0 && i > 0 && maps[i - 1] is { Name.Length: 0, Readable: false } guard && guard.End == m.Start && guard.End - guard.Start == Page)
                {
                    stacks += m.Rss;
                }
                else if (m.Name.Length == 0 || m.Name == "[stack]")
                {
                    other += m.Rss;
                }
            }
            return new ProcessMemory(rss, anon, file, shmem, code, data, binaries, malloc, stacks, other);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or FormatException)
        {
            return null;
        }
    }

    /// <summary>A glibc arena heap: anonymous, starts on a 64 MiB boundary, and it alone or with the reserved (no-access) mapping after it spans exactly 64 MiB.</summary>
    private static bool IsArenaHeap(List<Mapping> maps, int i)
    {
        var m = maps[i];
        if (m.Name.Length != 0 || m.Start % ArenaSize != 0)
        {
            return false;
        }
        if (m.End - m.Start == ArenaSize)
        {
            return true;
        }
        return i + 1 < maps.Count && maps[i + 1] is { Name.Length: 0, Readable: false } tail && tail.Start == m.End && tail.End == m.Start + ArenaSize;
    }

    private sealed record Mapping(long Start, long End, bool Readable, string Name)
    {
        public long Rss { get; set; }
    }

    private static List<Mapping> ReadSmaps(int pid)
    {
        var maps = new List<Mapping>(2048);
        foreach (var line in System.IO.File.ReadLines($"/proc/{pid}/smaps"))
        {
            if (line.StartsWith("Rss:", StringComparison.Ordinal))
            {
                maps[^1].Rss = Kb(line, "Rss:") ?? 0;
                continue;
            }
            // A mapping's header: "start-end perms offset dev inode [name]"; the fields after it are "Key:   value kB".
            var dash = line.IndexOf('-', StringComparison.Ordinal);
            var space = line.IndexOf(' ', StringComparison.Ordinal);
            if (dash <= 0 || space <= dash || line[..dash].Any(c => !char.IsAsciiHexDigit(c)))
            {
                continue;
            }
            var fields = line.Split(' ', 6, StringSplitOptions.RemoveEmptyEntries);
            maps.Add(new Mapping(
                long.Parse(line[..dash], NumberStyles.HexNumber, CultureInfo.InvariantCulture),
                long.Parse(line[(dash + 1)..space], NumberStyles.HexNumber, CultureInfo.InvariantCulture),
                fields[1][0] == 'r',
                fields.Length > 5 ? fields[5].Trim() : ""));
        }
        return maps;
    }

    private static long? Kb(string line, string key) =>
        line.StartsWith(key, StringComparison.Ordinal)
            ? long.Parse(line.AsSpan(key.Length).Trim().ToString().Split(' ')[0], CultureInfo.InvariantCulture) * 1024
            : null;
}
