// TEMPORARY: stand-ins with the agreed signatures until the ledger, scan and api branches merge. Deleted at merge.
using System.Buffers;
using Lattice.Protocol.Metering;

namespace Lattice.Protocol.Metering
{
    public readonly record struct JsonSplice(int Offset, int Length, byte[] Replacement);

    public static class IncludeUsagePatch
    {
        public static bool TryCreate(ReadOnlySpan<byte> chatRequestJson, out JsonSplice splice) { splice = default; return false; }
        public static bool ClientAskedForUsage(ReadOnlySpan<byte> json) => json.IndexOf("\"include_usage\":true"u8) >= 0;
    }

    public static class UsageReader
    {
        public static bool TryRead(ReadOnlySpan<byte> json, string? usagePath, string unit, out Usage usage) { usage = default; return false; }
    }

    public sealed class SseUsageFilter(bool stripInjectedUsage, bool keepText)
    {
        private readonly byte[] _tail = new byte[16];
        private int _tailLength;
        public bool SawDone { get; private set; }
        public Usage? Usage => null;
        public ReadOnlySpan<byte> Pending => default;
        public ReadOnlySpan<byte> Written => default;
        public void Push(ReadOnlySpan<byte> chunk, IBufferWriter<byte> output)
        {
            _ = stripInjectedUsage; _ = keepText;
            output.Write(chunk);
            if (chunk.Length >= 16) { chunk[^16..].CopyTo(_tail); _tailLength = 16; }
            else { var keep = Math.Min(_tailLength, 16 - chunk.Length); _tail.AsSpan(_tailLength - keep, keep).CopyTo(_tail); chunk.CopyTo(_tail.AsSpan(keep)); _tailLength = keep + chunk.Length; }
            var t = _tail.AsSpan(0, _tailLength);
            var trimmed = t.TrimEnd("\r\n"u8);
            SawDone = trimmed.EndsWith("data: [DONE]"u8) && trimmed.Length < t.Length;
        }
    }
}

namespace Lattice.Gateway.Metering
{
    public sealed class TokenEstimator
    {
        public Usage EstimateChat(ReadOnlySpan<byte> requestJson, ReadOnlySpan<byte> responseOrSseEvents, bool sse, string model) => new(Estimated: true);
        public Usage EstimateEmbeddings(ReadOnlySpan<byte> requestJson, string model) => new(Estimated: true);
    }



}



