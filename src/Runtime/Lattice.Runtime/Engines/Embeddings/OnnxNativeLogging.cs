using Microsoft.Extensions.Logging;
using Microsoft.ML.OnnxRuntime;

namespace Lattice.Runtime.Engines.Embeddings;

/// <summary>
/// Creates ONNX Runtime's process-wide environment with a logging callback, so its native log goes to a logger at
/// Debug level (or nowhere) instead of stderr. The environment can be created once per process: when something else
/// created it first, its logging stays as that code set it.
/// </summary>
internal static partial class OnnxNativeLogging
{
    private static readonly Lock Gate = new();
    private static readonly DOrtLoggingFunction Callback = OnNativeLog;
    private static ILogger? _logger;

    public static void Configure(ILogger? logger)
    {
        lock (Gate)
        {
            _logger ??= logger;
        }
    }

    public static void EnsureEnvironment()
    {
        lock (Gate)
        {
            if (OrtEnv.IsCreated)
            {
                return;
            }
            var options = new EnvironmentCreationOptions
            {
                logId = "lattice",
                logLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_WARNING,
                loggingFunction = Callback,
            };
            OrtEnv.CreateInstanceWithOptions(ref options);
        }
    }

    public static void LogLoaded(ILogger? logger, string model)
    {
        if (logger is not null)
        {
            Loaded(logger, model);
        }
    }

    private static void OnNativeLog(IntPtr param, OrtLoggingLevel severity, string category, string logId, string codeLocation, string message)
    {
        var logger = _logger;
        if (logger is not null && logger.IsEnabled(LogLevel.Debug))
        {
            Native(logger, severity, category, message);
        }
    }

    [LoggerMessage(EventId = 1, Level = LogLevel.Debug, Message = "onnxruntime [{Severity}] {Category}: {NativeMessage}")]
    private static partial void Native(ILogger logger, OrtLoggingLevel severity, string category, string nativeMessage);

    [LoggerMessage(EventId = 2, Level = LogLevel.Information, Message = "Loaded embeddings model {Model}")]
    private static partial void Loaded(ILogger logger, string model);
}
