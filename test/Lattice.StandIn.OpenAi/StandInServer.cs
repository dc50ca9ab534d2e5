using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;

namespace Lattice.StandIn.OpenAi;

/// <summary>
/// Builds the OpenAI stand-in server. <c>Program.cs</c> calls <c>Build(args).Run()</c>; tests may host it
/// in-process with <c>Build([...]).StartAsync()</c>.
/// </summary>
/// <remarks>
/// Recognised arguments (besides everything ASP.NET Core understands, e.g. <c>--urls</c>):
/// <c>--api-key KEY</c> (or env <c>STANDIN_API_KEY</c>) and <c>--no-record</c>.
/// Without <c>--urls</c> (or ASPNETCORE_URLS) the server listens on <c>http://127.0.0.1:0</c> (a free port).
/// </remarks>
public static class StandInServer
{
    /// <summary>The line printed to stdout once the server has started, followed by the first listening address.</summary>
    public const string ListeningBanner = "standin listening on ";

    public static WebApplication Build(string[] args)
    {
        ArgumentNullException.ThrowIfNull(args);
        var options = StandInOptions.Parse(args, out string[] hostArgs);

        var builder = WebApplication.CreateSlimBuilder(hostArgs);
        builder.Logging.ClearProviders();
        builder.Logging.AddConsole();
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.AddServerHeader = false;
            k.Limits.MaxRequestBodySize = 64L * 1024 * 1024;
        });
        if (string.IsNullOrEmpty(builder.Configuration["urls"]))
        {
            builder.WebHost.UseUrls("http://127.0.0.1:0");
        }

        var recorder = new RequestRecorder(options.Record);
        builder.Services.AddSingleton(options);
        builder.Services.AddSingleton(recorder);

        var app = builder.Build();

        app.Lifetime.ApplicationStarted.Register(() =>
        {
            var addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses;
            string url = addresses?.FirstOrDefault() ?? app.Urls.FirstOrDefault() ?? "(unknown)";
            Console.Out.WriteLine(ListeningBanner + url);
            Console.Out.Flush();
        });

        string? expectedAuthorization = options.ApiKey is null ? null : "Bearer " + options.ApiKey;

        // Everything under /v1: buffer the body once, record it, then check the API key.
        app.Use(async (HttpContext ctx, RequestDelegate next) =>
        {
            if (!ctx.Request.Path.StartsWithSegments("/v1", StringComparison.Ordinal))
            {
                await next(ctx);
                return;
            }

            byte[] body;
            try
            {
                body = await RequestBody.ReadAsync(ctx.Request, ctx.RequestAborted);
            }
            catch (BadHttpRequestException e)
            {
                await JsonOut.Error(ctx, e.StatusCode, "Could not read the request body: " + e.Message,
                    "invalid_request_error", null, null);
                return;
            }
            catch (Exception e) when (e is OperationCanceledException or IOException && ctx.RequestAborted.IsCancellationRequested)
            {
                return; // Client went away.
            }

            RecordedRequest? record = recorder.Enabled ? recorder.Record(ctx.Request, body) : null;
            ctx.Features.Set(new BufferedRequest(body, record));

            if (ctx.Request.Path.StartsWithSegments("/v1/messages", StringComparison.Ordinal))
            {
                // Anthropic's API: its own key header and version header, and its own error envelope.
                if (Messages.CheckHeaders(ctx, options.ApiKey) is { } refused)
                {
                    await refused;
                    return;
                }
            }
            else if (expectedAuthorization is not null)
            {
                var auth = ctx.Request.Headers.Authorization;
                if (auth.Count != 1 || !string.Equals(auth[0], expectedAuthorization, StringComparison.Ordinal))
                {
                    await JsonOut.Error(ctx, StatusCodes.Status401Unauthorized,
                        "Incorrect API key provided.", "invalid_request_error", null, "invalid_api_key");
                    return;
                }
            }

            await next(ctx);
        });

        app.MapPost("/v1/chat/completions", ChatCompletions.Handle);
        app.MapPost("/v1/messages", Messages.Handle);
        app.MapPost("/v1/embeddings", StandInEmbeddings.Handle);
        app.MapPost("/v1/responses", Responses.Handle);
        app.MapPost("/v1/audio/transcriptions", Transcriptions.Handle);
        app.MapGet("/v1/models", Models.HandleList);
        app.MapGet("/v1/models/{id}", Models.HandleGet);
        // Any path under /v1/custom/ echoes what it was sent, for task classes no built-in code knows about.
        app.MapPost("/v1/custom/{**rest}", async (HttpContext ctx) =>
        {
            var body = ctx.Features.Get<BufferedRequest>()!.Body;
            ctx.Response.ContentType = "application/json";
            await ctx.Response.WriteAsync("{\"object\":\"standin.echo\",\"path\":\"" + ctx.Request.Path + "\",\"body\":");
            await ctx.Response.Body.WriteAsync(body);
            await ctx.Response.WriteAsync("}");
        });
        app.Map("/v1/{**rest}", (HttpContext ctx) => JsonOut.Error(ctx, StatusCodes.Status404NotFound,
            $"Invalid URL ({ctx.Request.Method} {ctx.Request.Path})", "invalid_request_error", null, null));

        app.MapGet("/_standin/health", Introspection.HandleHealth);
        app.MapGet("/_standin/last", Introspection.HandleLast);
        app.MapGet("/_standin/held", (string gate) =>
            Results.Json(new { gate, waiting = StandInGates.Get(gate).Waiting, arrivals = StandInGates.Get(gate).Arrivals }));
        app.MapPost("/_standin/release", (string gate, int? count) =>
        {
            StandInGates.Get(gate).Release(Math.Max(1, count ?? 1));
            return Results.Json(new { gate, released = Math.Max(1, count ?? 1) });
        });
        app.MapGet("/_standin/stats", (HttpContext ctx) =>
            ctx.Response.WriteAsync("{\"client_aborts\":" + StandInStats.ClientAborts + "}"));
        app.MapPost("/_standin/reset", (HttpContext ctx) =>
        {
            recorder.Clear();
            ctx.Response.StatusCode = StatusCodes.Status204NoContent;
            return Task.CompletedTask;
        });

        return app;
    }
}

/// <summary>Counters tests read to see what the gateway did to the upstream.</summary>
public static class StandInStats
{
    private static long s_clientAborts;

    /// <summary>Streams that ended because the caller (the gateway) went away.</summary>
    public static long ClientAborts => Interlocked.Read(ref s_clientAborts);

    public static void CountClientAbort() => Interlocked.Increment(ref s_clientAborts);
}

/// <summary>Command-line / environment options of the stand-in.</summary>
internal sealed class StandInOptions
{
    public string? ApiKey { get; private init; }

    public bool Record { get; private init; } = true;

    /// <summary>
    /// Pulls the stand-in's own switches out of <paramref name="args"/> (the ASP.NET Core command-line
    /// configuration provider would otherwise swallow the argument following a value-less switch).
    /// </summary>
    public static StandInOptions Parse(string[] args, out string[] hostArgs)
    {
        string? apiKey = null;
        bool record = true;
        var rest = new List<string>(args.Length);
        for (int i = 0; i < args.Length; i++)
        {
            string a = args[i];
            if (a is "--no-record" or "/no-record")
            {
                record = false;
            }
            else if (a is "--api-key" or "/api-key")
            {
                if (i + 1 >= args.Length)
                {
                    throw new ArgumentException("--api-key requires a value.", nameof(args));
                }

                apiKey = args[++i];
            }
            else if (a.StartsWith("--api-key=", StringComparison.Ordinal))
            {
                apiKey = a["--api-key=".Length..];
            }
            else
            {
                rest.Add(a);
            }
        }

        if (string.IsNullOrEmpty(apiKey))
        {
            apiKey = Environment.GetEnvironmentVariable("STANDIN_API_KEY");
        }

        hostArgs = [.. rest];
        return new StandInOptions { ApiKey = string.IsNullOrEmpty(apiKey) ? null : apiKey, Record = record };
    }
}
