%% xfer.erl - an echo server and its client on gen_tcp, for
%% tests/compat/erlang.sh. The Erlang VM does its socket I/O on
%% non-blocking sockets and waits in its own poll thread(s) (epoll), waking
%% the scheduler threads that run the processes.
%%
%% Protocol: the client sends a header <<Mode:8, Len:64>>, then Len bytes,
%% while it reads the echo of those Len bytes; after the last one the
%% server sends the MD5 (16 bytes) of what it received, shuts down its
%% side, and closes when the client has closed. Modes, the ways gen_tcp
%% hands the server its data:
%%   $P passive: gen_tcp:recv/3 in a loop
%%   $A {active, once}: one message, then re-armed
%%   $N {active, 32}: 32 messages, then {tcp_passive, S} and re-armed
%%   $T {active, true}: every packet as a message
%%
%% erl -noshell -pa DIR -run xfer server PORT
%%   SIGTERM prints "connections C, closed C, echoed B bytes, errors 0" and
%%   stops the VM (init:stop/0).
%% erl -noshell -pa DIR -run xfer client PORT CONNS BYTES
%%   CONNS connections at once, modes in turn, BYTES random bytes each; the
%%   echo and the server's MD5 compared with what was sent. Exit status 0
%%   when all were right, 1 otherwise (with where each failed one stood).
-module(xfer).
-behaviour(gen_event).
-export([server/1, client/1]).
-export([init/1, handle_event/2, handle_call/2, handle_info/2, terminate/2]).

%% A wait for the peer longer than this is a stall.
-define(STALL, 15000).

%% ---------------------------------------------------------------- server

server([PortS]) ->
    Port = list_to_integer(PortS),
    Self = self(),
    %% The listener owns the counters (a public ETS table) and never ends.
    spawn(fun() -> listener(Port, Self) end),
    receive
        listening -> ok
    after 10000 ->
        io:format("xfer server: no listener after 10 s~n"),
        halt(1)
    end.

listener(Port, Parent) ->
    ets:new(xfer_stats, [named_table, public]),
    ets:insert(xfer_stats, [{conns, 0}, {closed, 0}, {bytes, 0}, {errors, 0}]),
    Opts = [binary, {ip, {127, 0, 0, 1}}, {active, false}, {reuseaddr, true}, {backlog, 128}],
    case gen_tcp:listen(Port, Opts) of
        {ok, L} ->
            ok = gen_event:swap_handler(erl_signal_server, {erl_signal_handler, []}, {?MODULE, []}),
            io:format("listening on ~b~n", [Port]),
            Parent ! listening,
            accept_loop(L);
        {error, E} ->
            io:format("xfer server: listen on ~b: ~p~n", [Port, E]),
            halt(1)
    end.

accept_loop(L) ->
    case gen_tcp:accept(L) of
        {ok, S} ->
            ets:update_counter(xfer_stats, conns, 1),
            Pid = spawn(fun() -> receive go -> serve(S) end end),
            ok = gen_tcp:controlling_process(S, Pid),
            Pid ! go,
            accept_loop(L);
        {error, E} ->
            io:format("xfer server: accept: ~p~n", [E]),
            ets:update_counter(xfer_stats, errors, 1),
            receive after infinity -> ok end
    end.

serve(S) ->
    R = case gen_tcp:recv(S, 9, ?STALL) of
            {ok, <<Mode:8, Len:64>>} ->
                case echo(Mode, S, Len) of
                    {ok, Ctx} -> finish(S, Len, Ctx);
                    {error, Why, Left} -> {error, Mode, Why, Len - Left, Len}
                end;
            {ok, Other} -> {error, $?, {bad_header, Other}, 0, 0};
            {error, E} -> {error, $?, {header, E}, 0, 0}
        end,
    case R of
        ok ->
            ets:update_counter(xfer_stats, closed, 1);
        {error, M, Why2, Got, Of} ->
            ets:update_counter(xfer_stats, errors, 1),
            io:format("xfer server: conn (mode ~s): ~p after ~b of ~b bytes~n",
                      [mode_name(M), Why2, Got, Of])
    end,
    gen_tcp:close(S).

%% After the echo: the MD5, our FIN, and the client's close.
finish(S, Len, Ctx) ->
    case gen_tcp:send(S, erlang:md5_final(Ctx)) of
        ok ->
            ok = gen_tcp:shutdown(S, write),
            case gen_tcp:recv(S, 0, ?STALL) of
                {error, closed} ->
                    ets:update_counter(xfer_stats, bytes, Len),
                    ok;
                Other ->
                    {error, $-, {after_md5, Other}, Len, Len}
            end;
        {error, E} ->
            {error, $-, {send_md5, E}, Len, Len}
    end.

echo($P, S, Len) ->
    passive(S, Len, erlang:md5_init());
echo($A, S, Len) ->
    active(S, Len, erlang:md5_init(), once);
echo($N, S, Len) ->
    active(S, Len, erlang:md5_init(), 32);
echo($T, S, Len) ->
    active(S, Len, erlang:md5_init(), true);
echo(M, _S, Len) ->
    {error, {bad_mode, M}, Len}.

passive(_S, 0, Ctx) ->
    {ok, Ctx};
passive(_S, Left, _Ctx) when Left < 0 ->
    {error, more_than_announced, Left};
passive(S, Left, Ctx) ->
    case gen_tcp:recv(S, 0, ?STALL) of
        {ok, D} ->
            case gen_tcp:send(S, D) of
                ok -> passive(S, Left - byte_size(D), erlang:md5_update(Ctx, D));
                {error, E} -> {error, {send, E}, Left}
            end;
        {error, E} ->
            {error, {recv, E}, Left}
    end.

active(S, Left, Ctx, Opt) ->
    ok = inet:setopts(S, [{active, Opt}]),
    active_loop(S, Left, Ctx, Opt).

active_loop(S, 0, Ctx, _Opt) ->
    ok = inet:setopts(S, [{active, false}]),
    {ok, Ctx};
active_loop(_S, Left, _Ctx, _Opt) when Left < 0 ->
    {error, more_than_announced, Left};
active_loop(S, Left, Ctx, Opt) ->
    receive
        {tcp, S, D} ->
            Left2 = Left - byte_size(D),
            %% Re-arm before the (maybe blocking) send, the way servers
            %% overlap reading and writing.
            Opt =:= once andalso Left2 > 0 andalso inet:setopts(S, [{active, once}]),
            case gen_tcp:send(S, D) of
                ok -> active_loop(S, Left2, erlang:md5_update(Ctx, D), Opt);
                {error, E} -> {error, {send, E}, Left}
            end;
        {tcp_passive, S} ->
            ok = inet:setopts(S, [{active, Opt}]),
            active_loop(S, Left, Ctx, Opt);
        {tcp_closed, S} ->
            {error, closed, Left};
        {tcp_error, S, E} ->
            {error, E, Left}
    after ?STALL ->
        {error, stalled, Left}
    end.

%% SIGTERM (erl_signal_server's handler, swapped for this one): the counts,
%% then an orderly stop of the VM.
init(_) -> {ok, nostate}.

handle_event(sigterm, St) ->
    [{_, C}] = ets:lookup(xfer_stats, conns),
    [{_, Cl}] = ets:lookup(xfer_stats, closed),
    [{_, B}] = ets:lookup(xfer_stats, bytes),
    [{_, E}] = ets:lookup(xfer_stats, errors),
    io:format("connections ~b, closed ~b, echoed ~b bytes, errors ~b~n", [C, Cl, B, E]),
    init:stop(),
    {ok, St};
handle_event(_, St) ->
    {ok, St}.

handle_call(_, St) -> {ok, ok, St}.
handle_info(_, St) -> {ok, St}.
terminate(_, _) -> ok.

%% ---------------------------------------------------------------- client

client([PortS, ConnsS, BytesS]) ->
    Port = list_to_integer(PortS),
    Conns = list_to_integer(ConnsS),
    Len = list_to_integer(BytesS),
    Self = self(),
    Modes = {$P, $A, $N, $T},
    Pids = [spawn(fun() ->
                      M = element(I rem 4 + 1, Modes),
                      Self ! {self(), I, M, catch conn(Port, I, M, Len)}
                  end)
            || I <- lists:seq(0, Conns - 1)],
    Results = [receive
                   {P, I, M, R} -> {I, M, R}
               after 60000 ->
                   {'?', '?', no_answer_in_60_s}
               end
               || P <- Pids],
    case [X || {_, _, R} = X <- Results, R =/= ok] of
        [] ->
            io:format("xfer client ok: ~b x ~b bytes echoed (modes P A N T in turn)~n", [Conns, Len]),
            halt(0);
        Bad ->
            [io:format("xfer client: conn ~p (mode ~s): ~p~n", [I, mode_name(M), R]) || {I, M, R} <- Bad],
            halt(1)
    end.

mode_name($P) -> "passive";
mode_name($A) -> "{active, once}";
mode_name($N) -> "{active, 32}";
mode_name($T) -> "{active, true}";
mode_name($?) -> "not known: no header";
mode_name($-) -> "any: the MD5 and the close";
mode_name(M) -> io_lib:format("~p", [M]).

conn(Port, I, Mode, Len) ->
    Data = rand:bytes(Len),
    Want = erlang:md5(Data),
    %% A connect that does not complete within 10 s fails the connection.
    case gen_tcp:connect({127, 0, 0, 1}, Port, [binary, {active, false}], 10000) of
        {ok, S} -> transfer(S, I, Mode, Data, Want);
        {error, E} -> {connect, E}
    end.

transfer(S, I, Mode, Data, Want) ->
    Len = byte_size(Data),
    case gen_tcp:send(S, <<Mode:8, Len:64>>) of
        ok ->
            R = transfer_data(S, I, Data, Want),
            gen_tcp:close(S),
            R;
        {error, E} ->
            gen_tcp:close(S),
            {send_header, E}
    end.

transfer_data(S, I, Data, Want) ->
    Len = byte_size(Data),
    Me = self(),
    %% Another process sends while this one reads (gen_tcp allows it).
    spawn(fun() -> Me ! {sent, send_chunks(S, Data, 0, I)} end),
    case recv_echo(S, Len, erlang:md5_init(), 0) of
        {ok, Echo, Md5, Extra} ->
            Sent = receive {sent, X} -> X after ?STALL -> sender_stalled end,
            if
                Sent =/= ok -> {sender, Sent};
                Echo =/= Want -> echo_differs;
                Md5 =/= Want -> server_md5_differs;
                Extra =/= <<>> -> {stray_bytes, byte_size(Extra)};
                true ->
                    case gen_tcp:recv(S, 0, ?STALL) of
                        {error, closed} -> ok;
                        Other -> {after_md5, Other}
                    end
            end;
        {error, Why} ->
            Sender = receive {sent, X} -> X after 0 -> still_sending end,
            {Why, {sender, Sender}}
    end.

%% Uneven pieces, up to 200,000 bytes.
send_chunks(_S, <<>>, _K, _I) ->
    ok;
send_chunks(S, Data, K, I) ->
    N = min(byte_size(Data), 1 + (K * 104729 + I * 7919) rem 200000),
    <<Piece:N/binary, Rest/binary>> = Data,
    case gen_tcp:send(S, Piece) of
        ok -> send_chunks(S, Rest, K + 1, I);
        {error, E} -> {error, E, byte_size(Rest) + N, left}
    end.

%% The Len echoed bytes, then the server's 16-byte MD5.
recv_echo(S, 0, Ctx, _Got) ->
    md5_trailer(S, erlang:md5_final(Ctx), <<>>);
recv_echo(S, Left, Ctx, Got) ->
    case gen_tcp:recv(S, 0, ?STALL) of
        {ok, D} when byte_size(D) =< Left ->
            recv_echo(S, Left - byte_size(D), erlang:md5_update(Ctx, D), Got + byte_size(D));
        {ok, D} ->
            <<E:Left/binary, Rest/binary>> = D,
            md5_trailer(S, erlang:md5_final(erlang:md5_update(Ctx, E)), Rest);
        {error, E} ->
            {error, {recv, E, Got, bytes_echoed}}
    end.

md5_trailer(_S, Echo, <<Md5:16/binary, Extra/binary>>) ->
    {ok, Echo, Md5, Extra};
md5_trailer(S, Echo, Part) ->
    case gen_tcp:recv(S, 16 - byte_size(Part), ?STALL) of
        {ok, D} -> md5_trailer(S, Echo, <<Part/binary, D/binary>>);
        {error, E} -> {error, {recv_md5, E}}
    end.
