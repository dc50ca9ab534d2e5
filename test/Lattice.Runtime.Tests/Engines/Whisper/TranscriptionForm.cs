using System.Net.Http.Headers;
using System.Text;

namespace Lattice.Runtime.Tests.Engines.Whisper;

/// <summary>Builds multipart/form-data transcription bodies the way the OpenAI SDKs send them.</summary>
public static class TranscriptionForm
{
    /// <summary>
    /// As .NET's <see cref="MultipartFormDataContent"/> writes it (and so the official OpenAI .NET SDK): unquoted field
    /// names, <c>filename</c> and <c>filename*=utf-8''…</c>, a quoted boundary in the content type.
    /// </summary>
    public static (byte[] Body, string ContentType) DotNet(byte[]? file, string fileName = "audio.wav", params (string Name, string Value)[] fields)
    {
        using var content = new MultipartFormDataContent();
        if (file is not null)
        {
            var fileContent = new ByteArrayContent(file);
            fileContent.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
            content.Add(fileContent, "file", fileName);
        }
        foreach (var (name, value) in fields)
        {
            content.Add(new StringContent(value), name);
        }
        var body = content.ReadAsByteArrayAsync().GetAwaiter().GetResult();
        return (body, content.Headers.ContentType!.ToString());
    }

    /// <summary>As Python's httpx and Node's fetch write it: quoted names and filename, unquoted boundary.</summary>
    public static (byte[] Body, string ContentType) Quoted(byte[] file, string fileName = "audio.wav", params (string Name, string Value)[] fields)
    {
        const string boundary = "----formdata-lattice-0123456789";
        using var body = new MemoryStream();
        void Text(string text) => body.Write(Encoding.UTF8.GetBytes(text));
        foreach (var (name, value) in fields)
        {
            Text($"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n");
        }
        Text($"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{fileName}\"\r\nContent-Type: audio/wav\r\n\r\n");
        body.Write(file);
        Text($"\r\n--{boundary}--\r\n");
        return (body.ToArray(), $"multipart/form-data; boundary={boundary}");
    }

    /// <summary>Raw parts, for bodies no SDK would send.</summary>
    public static (byte[] Body, string ContentType) Raw(string boundary, params byte[][] parts)
    {
        using var body = new MemoryStream();
        foreach (var part in parts)
        {
            body.Write(Encoding.ASCII.GetBytes($"--{boundary}\r\n"));
            body.Write(part);
            body.Write("\r\n"u8);
        }
        body.Write(Encoding.ASCII.GetBytes($"--{boundary}--\r\n"));
        return (body.ToArray(), $"multipart/form-data; boundary={boundary}");
    }
}
