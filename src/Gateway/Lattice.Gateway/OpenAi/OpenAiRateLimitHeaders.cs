using System.Globalization;
using Lattice.Gateway.Billing;

namespace Lattice.Gateway.OpenAi;

/// <summary>
/// OpenAI's rate-limit headers: <c>x-ratelimit-{limit,remaining,reset}-{requests,tokens}</c> on every answer to a
/// limited caller, and <c>retry-after</c> (whole seconds, rounded up) on a refusal.
/// </summary>
public static class OpenAiRateLimitHeaders
{
    public static void Write(IHeaderDictionary headers, in RateLimitReport report)
    {
        if (report.HasRequests)
        {
            headers["x-ratelimit-limit-requests"] = report.LimitRequests.ToString(CultureInfo.InvariantCulture);
            headers["x-ratelimit-remaining-requests"] = report.RemainingRequests.ToString(CultureInfo.InvariantCulture);
            headers["x-ratelimit-reset-requests"] = Duration(report.ResetRequests);
        }
        if (report.HasTokens)
        {
            headers["x-ratelimit-limit-tokens"] = report.LimitTokens.ToString(CultureInfo.InvariantCulture);
            headers["x-ratelimit-remaining-tokens"] = report.RemainingTokens.ToString(CultureInfo.InvariantCulture);
            headers["x-ratelimit-reset-tokens"] = Duration(report.ResetTokens);
        }
        if (report.RetryAfter is { } wait)
        {
            headers.RetryAfter = RetryAfterSeconds(wait).ToString(CultureInfo.InvariantCulture);
        }
    }

    /// <summary>Whole seconds to wait, rounded up, at least 1.</summary>
    public static long RetryAfterSeconds(TimeSpan wait) => Math.Max(1, (long)Math.Ceiling(wait.TotalSeconds));

    /// <summary>
    /// OpenAI's duration format (Go's): <c>0s</c>, <c>120ms</c>, <c>1s</c>, <c>7.66s</c>, <c>6m0s</c>, <c>1h2m3s</c> —
    /// milliseconds below a second, seconds with up to three decimals, then minutes and hours.
    /// </summary>
    public static string Duration(TimeSpan value)
    {
        var ms = (long)Math.Ceiling(Math.Max(0, value.TotalMilliseconds));
        if (ms == 0)
        {
            return "0s";
        }
        if (ms < 1000)
        {
            return ms.ToString(CultureInfo.InvariantCulture) + "ms";
        }
        var hours = ms / 3_600_000;
        var minutes = ms / 60_000 % 60;
        var seconds = ms % 60_000 / 1000m;
        var text = seconds.ToString("0.###", CultureInfo.InvariantCulture) + "s";
        if (hours > 0)
        {
            return $"{hours}h{minutes}m{text}";
        }
        return minutes > 0 ? $"{minutes}m{text}" : text;
    }
}
