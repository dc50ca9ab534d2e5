using System.Net;
using System.Reflection;
using Lattice.Client.Tests.Infrastructure;
using Microsoft.Extensions.AI;

namespace Lattice.Client.Tests.Errors;

/// <summary>Every error code the gateway can answer has its own exception type, carrying the request id (and retry-after).</summary>
public sealed class ErrorMapTests
{
    /// <summary>The gateway's codes, read from its own list (Lattice.Protocol.ErrorCodes), so a new code without a type fails here.</summary>
    public static TheoryData<string> GatewayCodes() => new(Constants(typeof(Lattice.Protocol.ErrorCodes)));

    private static List<string> Constants(Type type) => type.GetFields(BindingFlags.Public | BindingFlags.Static).Where(f => f.IsLiteral)
        .Select(f => (string)f.GetRawConstantValue()!).ToList();

    [Theory]
    [MemberData(nameof(GatewayCodes))]
    public void Every_gateway_error_code_has_its_own_exception_type(string code)
    {
        var exception = LatticeException.FromError(new LatticeError(400, code, "invalid_request_error", "m", RequestId: "req_1"));
        Assert.NotEqual(typeof(LatticeException), exception.GetType());
        Assert.NotEqual(typeof(InvalidRequestException), exception.GetType());
        Assert.NotEqual(typeof(ReauthorizeException), exception.GetType());
        Assert.Equal(code, exception.Code);
        Assert.Equal("req_1", exception.RequestId);
    }

    [Fact]
    public void No_two_codes_share_an_exception_type()
    {
        var codes = Constants(typeof(Lattice.Protocol.ErrorCodes)).Concat([LatticeErrorCodes.InvalidGrant, LatticeErrorCodes.AccessDenied, LatticeErrorCodes.ExpiredToken]).ToList();
        var types = codes.Select(c => LatticeException.FromError(new LatticeError(400, c, null, "m")).GetType()).ToList();
        Assert.Equal(codes.Count, types.Distinct().Count());
    }

    [Fact]
    public void The_sdk_lists_exactly_the_gateway_codes_plus_oauth_and_client_side_ones()
    {
        var sdk = Constants(typeof(LatticeErrorCodes)).ToHashSet();
        sdk.ExceptWith(["invalid_grant", "access_denied", "expired_token", "private_only", "no_reachable_runtime", "runtime_key_changed", "sealed_answer_invalid"]);
        Assert.Equal(Constants(typeof(Lattice.Protocol.ErrorCodes)).Order(), sdk.Order());
    }

    [Theory]
    [InlineData("revoked_grant", typeof(RevokedGrantException), typeof(ReauthorizeException))]
    [InlineData("invalid_grant", typeof(InvalidGrantException), typeof(ReauthorizeException))]
    [InlineData("invalid_value", typeof(InvalidValueException), typeof(InvalidRequestException))]
    [InlineData("model_not_supported", typeof(ModelNotSupportedException), typeof(InvalidRequestException))]
    [InlineData("personal_lattice_relay_unavailable", typeof(RelayUnavailableException), typeof(LatticeException))]
    [InlineData("personal_lattice_execution_timeout", typeof(ExecutionTimeoutException), typeof(LatticeException))]
    [InlineData("runtime_unreachable", typeof(RuntimeUnreachableException), typeof(LatticeException))]
    [InlineData("sealed_dispatch_unsupported", typeof(SealedDispatchUnsupportedException), typeof(InvalidRequestException))]
    [InlineData("sealed_request_unreadable", typeof(SealedRequestUnreadableException), typeof(InvalidRequestException))]
    public void Codes_map_to_their_types_and_families(string code, Type type, Type family)
    {
        var exception = LatticeException.FromError(new LatticeError(400, code, null, "m"));
        Assert.IsType(type, exception);
        Assert.IsAssignableFrom(family, exception);
    }

    [Fact]
    public void An_unknown_code_is_a_plain_lattice_exception_or_an_invalid_request_by_status()
    {
        Assert.IsType<LatticeException>(LatticeException.FromError(new LatticeError(500, "brand_new", null, "m")));
        Assert.IsType<InvalidRequestException>(LatticeException.FromError(new LatticeError(400, "context_length_exceeded", null, "m")));
        Assert.IsType<UpstreamErrorException>(LatticeException.FromError(new LatticeError(502, "server_error", null, "relayed")));
    }

    [Fact]
    public async Task A_rate_limit_answer_becomes_its_exception_with_request_id_retry_after_and_limit_type()
    {
        var transport = new ScriptedTransport(_ => ScriptedTransport.Error(HttpStatusCode.TooManyRequests, "rate_limit_exceeded", "requests", "req_42",
            TimeSpan.FromSeconds(17)));
        using var lattice = new LatticeClient(new LatticeClientOptions
        {
            Endpoint = new Uri("http://lattice.test"), TokenProvider = new DeveloperKeyTokenProvider("sk_x"), Transport = transport,
            Retry = new LatticeRetryOptions { MaxRetries = 0 },
        });
        var refused = await Assert.ThrowsAsync<RateLimitExceededException>(() => lattice.GetChatClient("lovelace:chat").GetResponseAsync("hi"));
        Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
        Assert.Equal("req_42", refused.RequestId);
        Assert.Equal(TimeSpan.FromSeconds(17), refused.RetryAfter);
        Assert.Equal("requests", refused.LimitType);
        Assert.True(refused.IsTransient);
    }

    [Fact]
    public async Task An_answer_without_an_envelope_keeps_its_status_and_request_id()
    {
        var transport = new ScriptedTransport(_ =>
        {
            var html = new HttpResponseMessage(HttpStatusCode.ServiceUnavailable) { Content = new StringContent("<html>a proxy in the way</html>") };
            html.Headers.Add("x-request-id", "req_html");
            return html;
        });
        using var lattice = new LatticeClient(new LatticeClientOptions
        {
            Endpoint = new Uri("http://lattice.test"), TokenProvider = new DeveloperKeyTokenProvider("sk_x"), Transport = transport,
            Retry = new LatticeRetryOptions { MaxRetries = 0 },
        });
        var failed = await Assert.ThrowsAsync<LatticeException>(() => lattice.Catalog.ListModelsAsync());
        Assert.Equal(HttpStatusCode.ServiceUnavailable, failed.StatusCode);
        Assert.Null(failed.Code);
        Assert.Equal("req_html", failed.RequestId);
    }

    [Fact]
    public void Insufficient_scopes_names_the_scope()
    {
        var refused = (InsufficientScopesException)LatticeException.FromError(new LatticeError(403, "insufficient_scopes", "permission_error",
            "The credential lacks the scope this request needs: lattice:compute:usage:read."));
        Assert.Equal("lattice:compute:usage:read", refused.RequiredScope);
    }
}
