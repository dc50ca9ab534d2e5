using Microsoft.Extensions.Logging;
using Whisper.net.Logger;

namespace Lattice.Runtime.Engines.Whisper;

/// <summary>
/// Routes whisper.cpp's and ggml's native log (process-wide; Whisper.net installs the native callback when it loads
/// the library) to a logger at Debug level, or drops it when no logger is set, so nothing reaches stderr. The first
/// engine that configures a logger wins. whisper.cpp logs model loading and timings, never audio or transcripts.
/// </summary>
internal static partial class WhisperNativeLogging
{
    private static readonly Lock Gate = new();
    private static ILogger? _logger;
    private static IDisposable? _subscription;

    public static void Configure(ILogger? logger)
    {
        lock (Gate)
        {
            _logger ??= logger;
            _subscription ??= LogProvider.AddLogger(OnNativeLog);
        }
    }

    private static void OnNativeLog(WhisperLogLevel level, string? message)
    {
        var logger = _logger;
        if (logger is null || string.IsNullOrWhiteSpace(message) || !logger.IsEnabled(LogLevel.Debug))
        {
            return;
        }
        Native(logger, level, message.TrimEnd('\n'));
    }

    [LoggerMessage(EventId = 1, Level = LogLevel.Debug, Message = "whisper.cpp [{Level}] {NativeMessage}")]
    private static partial void Native(ILogger logger, WhisperLogLevel level, string nativeMessage);

    [LoggerMessage(EventId = 2, Level = LogLevel.Information, Message = "Loaded whisper model {Model}")]
    public static partial void Loaded(ILogger logger, string model);

    [LoggerMessage(EventId = 3, Level = LogLevel.Debug, Message = "Transcribed {Seconds:0.0} s of {Format} audio with {Model} in {ElapsedMs} ms")]
    public static partial void Transcribed(ILogger logger, double seconds, string format, string model, long elapsedMs);
}
