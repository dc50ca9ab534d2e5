namespace Lattice.Protocol;

/// <summary>Files that hold secrets (credentials, tokens, keys): readable by their owner only (0600), replaced atomically.</summary>
public static class OwnerOnlyFile
{
    /// <summary>
    /// Writes <paramref name="path"/> through a fresh temporary file created with mode 0600, then moves it into place,
    /// so no reader ever sees a half-written file or a moment of looser permissions.
    /// </summary>
    public static void Write(string path, Action<Stream> write, bool overwrite = true)
    {
        if (Path.GetDirectoryName(Path.GetFullPath(path)) is { } directory)
        {
            Directory.CreateDirectory(directory);
        }
        var temp = path + ".tmp";
        // A leftover temporary file could carry looser permissions; create it afresh so the mode applies.
        File.Delete(temp);
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        }
        using (var stream = new FileStream(temp, options))
        {
            write(stream);
        }
        File.Move(temp, path, overwrite);
    }
}
