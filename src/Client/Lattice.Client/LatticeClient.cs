using System.Net.Http.Headers;
using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization.Metadata;
using Lattice.Client.Pipeline;

namespace Lattice.Client;

/// <summary>
/// The root of the Lattice SDK: one per gateway and credential, shared by the whole app. It hands out
/// Microsoft.Extensions.AI clients (<see cref="GetChatClient"/>, <see cref="GetEmbeddingGenerator"/>,
/// <see cref="GetSpeechToTextClient"/>), typed task calls (<see cref="InvokeAsync(string, JsonObject, CancellationToken)"/>),
/// and the <see cref="Catalog"/>, <see cref="Runtimes"/> and <see cref="Usage"/> APIs.
/// </summary>
public class LatticeClient : IDisposable
{
    private readonly HttpClient _http;
    private readonly bool _ownsHttp;

    /// <summary>A client of the gateway at <paramref name="endpoint"/> with a developer key (<c>sk_…</c>).</summary>
    public LatticeClient(Uri endpoint, string developerKey)
        : this(new LatticeClientOptions { Endpoint = endpoint, TokenProvider = new DeveloperKeyTokenProvider(developerKey) })
    {
    }

    /// <summary>A client built from <paramref name="options"/>.</summary>
    public LatticeClient(LatticeClientOptions options)
        : this(options, LatticePipeline.Build(options ?? throw new ArgumentNullException(nameof(options))), ownsHttp: true)
    {
    }

    private LatticeClient(LatticeClientOptions options, HttpClient http, bool ownsHttp)
    {
        Options = options;
        _http = http;
        _ownsHttp = ownsHttp;
        Catalog = new LatticeCatalog(this);
        Runtimes = new LatticeRuntimes(this);
        Usage = new LatticeUsage(this);
    }

    /// <summary>A mockable client for tests of code that uses one.</summary>
    protected LatticeClient()
    {
        Options = null!;
        _http = null!;
        Catalog = null!;
        Runtimes = null!;
        Usage = null!;
    }

    /// <summary>The options this client was built with (frozen).</summary>
    public LatticeClientOptions Options { get; }

    /// <summary>Models and task classes.</summary>
    public virtual LatticeCatalog Catalog { get; }

    /// <summary>Personal runtimes: list, choose, pin.</summary>
    public virtual LatticeRuntimes Runtimes { get; }

    /// <summary>What requests used and cost.</summary>
    public virtual LatticeUsage Usage { get; }

    /// <summary>
    /// The same gateway and credential, with every call that names no model of its own sent to <paramref name="runtime"/>
    /// (its <c>lattice:personal:…</c> id), which is never rerouted: an offline runtime fails with <see cref="RuntimeUnreachableException"/>.
    /// </summary>
    public virtual LatticeClient WithRuntime(PersonalRuntime runtime)
    {
        ArgumentNullException.ThrowIfNull(runtime);
        return WithOptions(Options with { PinnedRuntimeId = runtime.LatticeId });
    }

    /// <summary>The same gateway and credential under another <see cref="CapacityPolicy"/>.</summary>
    public virtual LatticeClient WithPolicy(CapacityPolicy policy) => WithOptions(Options with { CapacityPolicy = policy });

    private LatticeClient WithOptions(LatticeClientOptions options) => new(options, _http, ownsHttp: false);

    /// <summary>An <see cref="Microsoft.Extensions.AI.IChatClient"/> over <c>/v1/chat/completions</c>; <paramref name="model"/> is the default model id.</summary>
    public virtual LatticeChatClient GetChatClient(string? model = null) => new(this, model);

    /// <summary>
    /// An <see cref="Microsoft.Extensions.AI.IChatClient"/> whose calls are sealed to <paramref name="runtime"/>'s work key
    /// (docs/sealed-dispatch.md): the gateway routes and meters them but relays only ciphertext, and only this client
    /// opens the answers. The key is pinned on first use (<see cref="LatticeClientOptions.RuntimeKeyPins"/>); a call
    /// finding another key fails with <see cref="RuntimeKeyChangedException"/> before anything is sent. Every call goes
    /// to this runtime (its <see cref="Microsoft.Extensions.AI.ChatOptions.ModelId"/> is ignored); the answer's model is the
    /// runtime's own name for it.
    /// </summary>
    /// <param name="runtime">The runtime, as read from <see cref="Runtimes"/> (it carries the published work key).</param>
    /// <exception cref="SealedDispatchUnsupportedException">The runtime publishes no work key.</exception>
    public virtual LatticeChatClient GetSealedChatClient(PersonalRuntime runtime)
    {
        var target = Sealing.SealedTarget.For(runtime, Options.TimeProvider);
        // The first session's key pair and ECDH are made now, on the thread pool, not on the first call.
        target.Sessions.Prepare();
        return new(this, target.Model, target);
    }

    /// <summary>
    /// Pins the work key <paramref name="runtime"/> publishes now, replacing an earlier pin: after a
    /// <see cref="RuntimeKeyChangedException"/>, once the runtime's owner confirmed the new fingerprint.
    /// </summary>
    public virtual async Task AcceptRuntimeKeyAsync(PersonalRuntime runtime, CancellationToken cancellationToken = default)
    {
        using var target = Sealing.SealedTarget.For(runtime, Options.TimeProvider);
        await Options.RuntimeKeyPins.SetAsync(target.LatticeId, target.Fingerprint, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Trust on first use: pins <paramref name="fingerprint"/> the first time, and refuses any other later.</summary>
    internal async ValueTask CheckPinAsync(string latticeId, string fingerprint, CancellationToken cancellationToken)
    {
        var pins = Options.RuntimeKeyPins;
        var pinned = await pins.GetAsync(latticeId, cancellationToken).ConfigureAwait(false);
        if (pinned is null)
        {
            await pins.SetAsync(latticeId, fingerprint, cancellationToken).ConfigureAwait(false);
        }
        else if (!string.Equals(pinned, fingerprint, StringComparison.Ordinal))
        {
            throw new RuntimeKeyChangedException(latticeId, pinned, fingerprint);
        }
    }

    /// <summary>An <see cref="Microsoft.Extensions.AI.IEmbeddingGenerator{TInput, TEmbedding}"/> over <c>/v1/embeddings</c>.</summary>
    public virtual LatticeEmbeddingGenerator GetEmbeddingGenerator(string? model = null) => new(this, model);

    /// <summary>An <see cref="Microsoft.Extensions.AI.ISpeechToTextClient"/> over <c>/v1/audio/transcriptions</c>.</summary>
    public virtual LatticeSpeechToTextClient GetSpeechToTextClient(string? model = null) => new(this, model);

    /// <summary>
    /// Runs task <paramref name="task"/> (<c>POST /v1/tasks/{task}</c>, such as <c>rerank</c>) with <paramref name="input"/>,
    /// its input document, and returns its JSON answer. Without a <c>model</c> in the input, the pinned runtime's is used.
    /// </summary>
    public virtual async Task<JsonElement> InvokeAsync(string task, JsonObject input, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(task);
        ArgumentNullException.ThrowIfNull(input);
        var model = ResolveModel(input["model"]?.GetValue<string>(), null);
        var body = input.DeepClone().AsObject();
        body["model"] = model;
        using var request = JsonRequest(TaskPath(task), model, JsonSerializer.SerializeToUtf8Bytes(body, Json.NodeContext.Default.JsonObject));
        using var response = await SendAsync(request, HttpCompletionOption.ResponseContentRead, cancellationToken).ConfigureAwait(false);
        using var document = await JsonDocument.ParseAsync(await response.Content.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false), default, cancellationToken).ConfigureAwait(false);
        return document.RootElement.Clone();
    }

    /// <summary>
    /// Runs task <paramref name="task"/> with a typed input and answer, serialized with your source-generated
    /// <see cref="JsonTypeInfo{T}"/> (the input must carry its <c>model</c>).
    /// </summary>
    public virtual async Task<TOutput> InvokeAsync<TInput, TOutput>(string task, TInput input, JsonTypeInfo<TInput> inputType, JsonTypeInfo<TOutput> outputType,
        CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(task);
        var node = JsonSerializer.SerializeToNode(input, inputType) as JsonObject
            ?? throw new ArgumentException("A task's input must serialize to a JSON object.", nameof(input));
        var answer = await InvokeAsync(task, node, cancellationToken).ConfigureAwait(false);
        return answer.Deserialize(outputType) ?? throw new JsonException($"The task '{task}' answered null.");
    }

    /// <summary>
    /// Runs a streaming task (<c>"stream": true</c> is added) and yields each event's JSON object as it arrives.
    /// An error event that ends the stream is thrown as its <see cref="LatticeException"/>.
    /// </summary>
    public virtual async IAsyncEnumerable<JsonElement> InvokeStreamingAsync(string task, JsonObject input, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(task);
        ArgumentNullException.ThrowIfNull(input);
        var model = ResolveModel(input["model"]?.GetValue<string>(), null);
        var body = input.DeepClone().AsObject();
        body["model"] = model;
        body["stream"] = true;
        using var request = JsonRequest(TaskPath(task), model, JsonSerializer.SerializeToUtf8Bytes(body, Json.NodeContext.Default.JsonObject));
        using var response = await SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken).ConfigureAwait(false);
        await foreach (var data in SseReader.ReadAsync(response, cancellationToken).ConfigureAwait(false))
        {
            using var document = JsonDocument.Parse(data);
            yield return document.RootElement.Clone();
        }
    }

    private static string TaskPath(string task) => "v1/tasks/" + Uri.EscapeDataString(task);

    /// <summary>
    /// The model id a call goes to: its own, else the client's default, else the pinned runtime's — then held to the
    /// <see cref="CapacityPolicy"/>.
    /// </summary>
    internal string ResolveModel(string? requested, string? clientDefault)
    {
        var model = requested ?? clientDefault ?? (Options.PinnedRuntimeId is { } pinned ? ModelIds.ForRuntime(pinned) : null);
        if (model is null)
        {
            throw new InvalidOperationException("No model: name one on the call or the client, or pin a runtime (WithRuntime).");
        }
        if (Options.CapacityPolicy == CapacityPolicy.PrivateOnly && !ModelIds.IsPersonalRuntime(model))
        {
            throw new PrivateOnlyViolationException(model);
        }
        return model;
    }

    /// <summary>What the Microsoft.Extensions.AI clients answer to <c>GetService</c>: their metadata, this client, themselves.</summary>
    internal static object? ServiceOf(object self, object metadata, LatticeClient client, Type serviceType, object? serviceKey)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        return serviceKey is not null ? null
            : serviceType.IsInstanceOfType(metadata) ? metadata
            : serviceType == typeof(LatticeClient) ? client
            : serviceType.IsInstanceOfType(self) ? self
            : null;
    }

    internal static HttpRequestMessage JsonRequest(string path, string? model, byte[] body)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new ByteArrayContent(body) };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        Target(request, model);
        return request;
    }

    /// <summary>Tells the pipeline's stages which personal runtime the request goes to.</summary>
    internal static void Target(HttpRequestMessage request, string? model)
    {
        if (ModelIds.RuntimeIdOf(model) is { } runtime)
        {
            request.Options.Set(LatticeRequestOptions.RuntimeId, runtime);
        }
    }

    /// <summary>Sends through the pipeline; a non-success answer has already become its exception.</summary>
    internal Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, HttpCompletionOption completion, CancellationToken cancellationToken) =>
        _http.SendAsync(request, completion, cancellationToken);

    internal async Task<T> GetAsync<T>(string path, JsonTypeInfo<T> type, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, path);
        using var response = await SendAsync(request, HttpCompletionOption.ResponseContentRead, cancellationToken).ConfigureAwait(false);
        return await ReadAsync(response, type, cancellationToken).ConfigureAwait(false);
    }

    internal async Task<T> PostAsync<T>(string path, byte[] body, JsonTypeInfo<T> type, CancellationToken cancellationToken)
    {
        using var request = JsonRequest(path, null, body);
        using var response = await SendAsync(request, HttpCompletionOption.ResponseContentRead, cancellationToken).ConfigureAwait(false);
        return await ReadAsync(response, type, cancellationToken).ConfigureAwait(false);
    }

    internal static async Task<T> ReadAsync<T>(HttpResponseMessage response, JsonTypeInfo<T> type, CancellationToken cancellationToken)
    {
        var stream = await response.Content.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false);
        return await JsonSerializer.DeserializeAsync(stream, type, cancellationToken).ConfigureAwait(false)
            ?? throw new JsonException($"The gateway answered null where a {typeof(T).Name} was expected.");
    }

    /// <summary>Frees the HTTP pipeline (clients made by <see cref="WithRuntime"/> share it and free nothing).</summary>
    public void Dispose()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    /// <summary>Frees the HTTP pipeline when <paramref name="disposing"/>.</summary>
    protected virtual void Dispose(bool disposing)
    {
        if (disposing && _ownsHttp)
        {
            _http.Dispose();
        }
    }
}
