using Lattice.Client.Sealing;
using Lattice.Protocol.Sealing;
using Microsoft.Extensions.Time.Testing;

namespace Lattice.Client.Tests.Sealing;

/// <summary>
/// The SDK's sealing sessions (docs/sealed-dispatch.md, "Sessions"): made ahead on the thread pool, used for a bounded
/// number of requests and time, the next one ready before the current one is spent. Time is a fake clock.
/// </summary>
[Trait("Category", "Sealed")]
public sealed class SealingSessionsTests : IDisposable
{
    private const string RuntimeId = "lat_test";
    private readonly System.Security.Cryptography.ECDiffieHellman _work = SealedFormat.NewKey();
    private readonly FakeTimeProvider _time = new();
    private int _requests;

    public void Dispose() => _work.Dispose();

    private byte[] WorkPublic => SealedFormat.PublicKeyOf(_work);

    /// <summary>Seals a request and opens it as the daemon would; returns the ephemeral key it was sealed with.</summary>
    private async Task<string> SealAsync(SealingSessions sessions)
    {
        var requestId = "sreq_" + ++_requests;
        var (sealedBody, reply) = await sessions.SealAsync("{}"u8.ToArray(), requestId, RuntimeId, CancellationToken.None);
        reply.Dispose();
        Assert.Equal("{}"u8.ToArray(), SealedRequest.Open(sealedBody, _work, requestId, RuntimeId, out var sealer));
        sealer.Dispose();
        return Convert.ToHexString(sealedBody.AsSpan(1, SealedFormat.PublicKeyBytes));
    }

    [Fact]
    public async Task A_session_serves_its_requests_and_the_next_is_made_once_half_are_used()
    {
        using var sessions = new SealingSessions(WorkPublic, _time, maxRequests: 4);
        sessions.Prepare();
        Assert.Equal(1, sessions.SessionsMade);
        var first = await SealAsync(sessions);
        Assert.Equal(1, sessions.SessionsMade);
        Assert.Equal(first, await SealAsync(sessions)); // the second of four: the next session is started now
        Assert.Equal(2, sessions.SessionsMade);
        Assert.Equal(first, await SealAsync(sessions));
        Assert.Equal(first, await SealAsync(sessions));
        var second = await SealAsync(sessions); // the fifth: the next session takes over
        Assert.NotEqual(first, second);
        Assert.Equal(2, sessions.SessionsMade);
    }

    [Fact]
    public async Task A_session_is_used_for_a_bounded_time()
    {
        using var sessions = new SealingSessions(WorkPublic, _time, maxRequests: 1000, maxAge: TimeSpan.FromMinutes(10));
        var first = await SealAsync(sessions); // no Prepare: the first call waits for the first session
        Assert.Equal(1, sessions.SessionsMade);
        _time.Advance(TimeSpan.FromMinutes(4));
        Assert.Equal(first, await SealAsync(sessions));
        Assert.Equal(1, sessions.SessionsMade);
        _time.Advance(TimeSpan.FromMinutes(2)); // past half its time: the next one is made
        Assert.Equal(first, await SealAsync(sessions));
        Assert.Equal(2, sessions.SessionsMade);
        _time.Advance(TimeSpan.FromMinutes(5)); // past its time
        Assert.NotEqual(first, await SealAsync(sessions));
    }

    [Fact]
    public async Task Disposed_sessions_seal_nothing()
    {
        var sessions = new SealingSessions(WorkPublic, _time);
        await SealAsync(sessions);
        sessions.Dispose();
        await Assert.ThrowsAsync<ObjectDisposedException>(() => SealAsync(sessions));
    }
}
