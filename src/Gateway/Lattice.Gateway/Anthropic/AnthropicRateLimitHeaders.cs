using System.Globalization;
using Lattice.Gateway.Billing;

namespace Lattice.Gateway.Anthropic;

/// <summary>
/// Anthropic's rate-limit headers: <c>anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}</c>, the reset as an
/// RFC 3339 time (UTC, whole seconds rounded up), and <c>retry-after</c> in whole seconds on a refusal.
/// </summary>
public static class AnthropicRateLimitHeaders
{
    public static void Write(IHeaderDictionary headers, in RateLimitReport report, DateTimeOffset now)
    {
        if (report.HasRequests)
        {
            headers["anthropic-ratelimit-requests-limit"] = report.LimitRequests.ToString(CultureInfo.InvariantCulture);
            headers["anthropic-ratelimit-requests-remaining"] = report.RemainingRequests.ToString(CultureInfo.InvariantCulture);
            headers["anthropic-ratelimit-requests-reset"] = Rfc3339(now, report.ResetRequests);
        }
        if (report.HasTokens)
        {
            headers["anthropic-ratelimit-tokens-limit"] = report.LimitTokens.ToString(CultureInfo.InvariantCulture);
            headers["anthropic-ratelimit-tokens-remaining"] = report.RemainingTokens.ToString(CultureInfo.InvariantCulture);
            headers["anthropic-ratelimit-tokens-reset"] = Rfc3339(now, report.ResetTokens);
        }
        if (report.RetryAfter is { } wait)
        {
            headers.RetryAfter = OpenAi.OpenAiRateLimitHeaders.RetryAfterSeconds(wait).ToString(CultureInfo.InvariantCulture);
        }
    }

    /// <summary><paramref name="now"/> plus <paramref name="after"/>, rounded up to the second: <c>2026-12-03T16:40:05Z</c>.</summary>
    public static string Rfc3339(DateTimeOffset now, TimeSpan after)
    {
        var at = now.UtcDateTime + (after > TimeSpan.Zero ? after : TimeSpan.Zero);
        var seconds = (at.Ticks + TimeSpan.TicksPerSecond - 1) / TimeSpan.TicksPerSecond;
        return new DateTime(seconds * TimeSpan.TicksPerSecond, DateTimeKind.Utc).ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture);
    }
}
