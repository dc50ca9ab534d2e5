using System.Net.ServerSentEvents;
using System.Runtime.CompilerServices;
using Lattice.Client;
using Microsoft.Extensions.AI;

namespace Lattice.Samples.SealedChat;

/// <summary>The chat: the page posts a prompt, the app streams the sealed answer back as server-sent events.</summary>
public static class Chat
{
    /// <summary>The body of <c>POST /chat</c>.</summary>
    public sealed record Question(string? Prompt);

    /// <summary>One event of the answer: a piece of text, the end, or the failure screen to show.</summary>
    public sealed record AnswerEvent(string? Text = null, string? Screen = null);

    public static void MapChat(this WebApplication app)
    {
        app.MapPost("/chat", (Question question, HttpContext context, Sessions sessions, CancellationToken cancellationToken) =>
            TypedResults.ServerSentEvents(Answer(sessions.Of(context), question.Prompt ?? "", cancellationToken)));
    }

    private static async IAsyncEnumerable<SseItem<AnswerEvent>> Answer(Session session, string prompt, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        if (session.Lattice is not { } lattice)
        {
            yield return Failure("/problem/" + FailureScreens.Reauthorize);
            yield break;
        }
        if (session.Runtime is not { PublicWorkKey: not null } runtime)
        {
            yield return Failure("/problem/" + FailureScreens.SelectRuntime);
            yield break;
        }

        // Sealed to the runtime's work key: the gateway routes and meters the call but relays only ciphertext. One
        // sealed client per session and runtime, so the chats share its sealing sessions.
        await using var updates = session.SealedChat(lattice, runtime)
            .GetStreamingResponseAsync(prompt, cancellationToken: cancellationToken).GetAsyncEnumerator(cancellationToken);
        while (true)
        {
            // C# cannot yield inside a try that has a catch, so a failure is carried out of it.
            Exception? failure = null;
            var more = false;
            try
            {
                more = await updates.MoveNextAsync();
            }
            catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
            {
                failure = e;
            }
            if (failure is not null)
            {
                if (failure is ReauthorizeException)
                {
                    session.SignOut();
                }
                yield return Failure(FailureScreens.UrlFor(failure));
                yield break;
            }
            if (!more)
            {
                break;
            }
            if (updates.Current.Text is { Length: > 0 } text)
            {
                yield return new SseItem<AnswerEvent>(new AnswerEvent(Text: text), "text");
            }
        }
        yield return new SseItem<AnswerEvent>(new AnswerEvent(), "done");
    }

    private static SseItem<AnswerEvent> Failure(string screenUrl) => new(new AnswerEvent(Screen: screenUrl), "failure");

    /// <summary>The chat page; its script reads the event stream with fetch (EventSource cannot POST).</summary>
    public static IResult Page(PersonalRuntime runtime) => Html.Page("Chat", $$"""
        <h1>Sealed Chat</h1>
        <p>Runtime: <strong id="runtime">{{Html.Encode(runtime.DisplayName)}}</strong> (<a href="/runtimes">change</a>).
        Sealed to its work key: only it and this app can read the conversation.</p>
        <form id="ask">
          <label for="prompt">Your message</label>
          <textarea id="prompt" name="prompt" rows="3" required></textarea>
          <button id="send">Send</button>
        </form>
        <p id="status"></p>
        <div id="answer"></div>
        <script>
        document.getElementById('ask').addEventListener('submit', async (event) => {
          event.preventDefault();
          const answer = document.getElementById('answer'), status = document.getElementById('status');
          answer.textContent = '';
          status.textContent = 'Answering…';
          const response = await fetch('/chat', {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ prompt: document.getElementById('prompt').value }),
          });
          if (!response.ok) {
            location.assign('/problem/support');
            return;
          }
          const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
          let buffer = '';
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            buffer += value;
            let end;
            while ((end = buffer.indexOf('\n\n')) >= 0) {
              const lines = buffer.slice(0, end).split('\n');
              buffer = buffer.slice(end + 2);
              const type = lines.find((l) => l.startsWith('event: '))?.slice(7);
              const data = JSON.parse(lines.filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\n'));
              if (type === 'text') answer.textContent += data.text;
              if (type === 'done') status.textContent = 'Done';
              if (type === 'failure') location.assign(data.screen);
            }
          }
        });
        </script>
        """);
}
