namespace Lattice.Client.Pipeline;

/// <summary>
/// The stages every request goes through, outermost first:
/// <list type="number">
/// <item><see cref="RetryHandler"/>: one idempotency key per call; retries with backoff and <c>retry-after</c>.</item>
/// <item><see cref="AuthenticationHandler"/>: the token, renewed once when the gateway refuses it.</item>
/// <item><see cref="ErrorHandler"/>: a non-success answer becomes its typed <see cref="LatticeException"/>.</item>
/// </list>
/// Sealing is not a stage: a sealed call is sealed once, before the pipeline, so every retry sends the same bytes and an
/// idempotent replay of its answer opens with the same reply key (<see cref="Sealing.SealedCall"/>).
/// </summary>
internal static class LatticePipeline
{
    public static HttpClient Build(LatticeClientOptions options)
    {
        var transport = options.Transport ?? new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.FromMinutes(5) };
        HttpMessageHandler handler = new ErrorHandler(options.TimeProvider) { InnerHandler = transport };
        handler = new AuthenticationHandler(options.TokenProvider) { InnerHandler = handler };
        handler = new RetryHandler(options.Retry, options.TimeProvider) { InnerHandler = handler };
        return new HttpClient(handler, disposeHandler: options.Transport is null)
        {
            BaseAddress = new Uri(options.Endpoint.AbsoluteUri.TrimEnd('/') + "/"),
            Timeout = options.Timeout,
        };
    }
}

/// <summary>What a request carries for the pipeline's stages, beyond its headers and body.</summary>
public static class LatticeRequestOptions
{
    /// <summary>The personal runtime (<c>lat_…</c>) a request targets, when its model id names one.</summary>
    public static readonly HttpRequestOptionsKey<string> RuntimeId = new("Lattice.RuntimeId");
}
