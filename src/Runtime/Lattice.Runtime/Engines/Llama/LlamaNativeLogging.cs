using System.Text;
using LLama.Native;
using Microsoft.Extensions.Logging;

namespace Lattice.Runtime.Engines.Llama;

/// <summary>
/// Routes llama.cpp's native log (process-wide) to a logger at Debug level, or drops it when no logger is set, so
/// nothing is written to stderr. The first engine that configures it wins; later engines only replace a null logger.
/// </summary>
internal static class LlamaNativeLogging
{
    private static readonly Lock Gate = new();
    private static ILogger? _logger;
    private static bool _installed;

    [ThreadStatic]
    private static StringBuilder? _line;

    public static void Configure(ILogger? logger)
    {
        lock (Gate)
        {
            _logger ??= logger;
            if (_installed)
            {
                return;
            }
            // A null callback would restore llama.cpp's default (stderr) logger, so always install one.
            NativeLogConfig.llama_log_set(OnNativeLog);
            _installed = true;
        }
    }

    private static void OnNativeLog(LLamaLogLevel level, string message)
    {
        var logger = _logger;
        if (logger is null || !logger.IsEnabled(LogLevel.Debug))
        {
            return;
        }
        var line = _line ??= new StringBuilder();
        line.Append(message);
        if (!message.EndsWith('\n'))
        {
            return;
        }
        var text = line.ToString().TrimEnd('\n');
        line.Clear();
        if (text.Length > 0)
        {
            logger.LogDebug("llama.cpp [{Level}] {Message}", level, text);
        }
    }
}
