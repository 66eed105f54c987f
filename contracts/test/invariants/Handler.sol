// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Test} from "forge-std/Test.sol";
import {Vm} from "forge-std/Vm.sol";

import {ClearingHouse} from "../../src/ClearingHouse.sol";
import {EscapeHatch} from "../../src/EscapeHatch.sol";
import {InsuranceFund} from "../../src/InsuranceFund.sol";
import {Vault} from "../../src/Vault.sol";
import {HxTimelock} from "../../src/governance/HxTimelock.sol";
import {SumTree} from "../../src/libraries/SumTree.sol";
import {TestToken} from "../../src/test-tokens/TestToken.sol";
import {TreeBuilder} from "../helpers/TreeBuilder.sol";

/// @notice Drives the system like its real users, plus a thief holding the operator key: depositors, the operator
///         (a faithful engine model: trades that leave accounts owing USDC against WETH, signed withdrawals, fees,
///         insurance cover, forced serves), payouts under the caps, watchers that void what the thief posts and
///         random young batches (the model rolls back with them), pauses, time, freezes, netted escapes, forged
///         exits, reclaims. Ghost variables record what the invariants check.
contract Handler is Test {
    using TreeBuilder for TreeBuilder.Tree;

    struct Dep {
        uint48 id;
        address account;
        address token;
        uint256 amount;
        uint64 at;
    }

    struct Req {
        uint256 id;
        address account;
        address token;
        uint256 amount;
        uint64 servedIn; // 0: unserved (or served by a voided batch)
    }

    ClearingHouse public immutable ch;
    Vault public immutable vault;
    InsuranceFund public immutable fund;
    EscapeHatch public immutable hatch;
    address public immutable operator;
    address public immutable guardian;
    address public immutable watcher;
    address public immutable thief;
    uint256 internal immutable thiefKey;

    address[] public actors;
    address[] public tokens;
    mapping(address => uint256) internal keyOf;

    // engine model (== the last canonical batch: every action commits what it changes)
    mapping(address token => mapping(address account => uint256)) public bal;
    mapping(address token => mapping(address account => uint256)) public debt;
    mapping(address token => uint256) public price;
    mapping(address token => uint256) public fundModel;
    Dep[] internal _deps;
    uint48 public creditedUpTo;
    Req[] internal _reqs;
    mapping(address => uint256) internal _nonce;

    // per canonical batch: the committed model, for rollbacks and escapes
    mapping(uint64 => mapping(address => mapping(address => uint256))) internal _sBal;
    mapping(uint64 => mapping(address => mapping(address => uint256))) internal _sDebt;
    mapping(uint64 => mapping(address => uint256)) internal _sPrice;
    mapping(uint64 => mapping(address => uint256)) internal _sFund;
    mapping(uint64 => uint48) internal _sCredited;
    mapping(uint64 => uint256) public acceptedAt;
    mapping(uint64 => bytes32) internal _hash;
    mapping(uint64 => ClearingHouse.Ledger[]) internal _ledgers;
    mapping(uint64 => ClearingHouse.Payout[]) internal _payouts;

    // ghosts
    uint64 public ghostBatches; // canonical head as the handler sees it
    bool public ghostBroken; // something that must never happen happened (message in ghostWhy)
    string public ghostWhy;
    mapping(address token => uint256) public ghostPaidToActors; // authorised: signed/forced payouts, exits, reclaims
    mapping(address token => mapping(uint256 period => uint256)) public ghostCappedOut;
    uint256[] public ghostPeriods;
    mapping(address token => uint256) public ghostEscaped;
    mapping(address token => mapping(address account => uint256)) public ghostEscapedBy;
    mapping(address account => uint256) public ghostEscapeCount;
    bool public ghostBasket;
    mapping(address token => uint256) public ghostFund;
    mapping(bytes32 => uint256) public calls;

    constructor(
        ClearingHouse ch_,
        address operator_,
        address guardian_,
        address watcher_,
        address[] memory actors_,
        uint256[] memory keys_
    ) {
        ch = ch_;
        vault = ch_.vault();
        fund = ch_.insuranceFund();
        hatch = ch_.escapeHatch();
        operator = operator_;
        guardian = guardian_;
        watcher = watcher_;
        (thief, thiefKey) = makeAddrAndKey("thief");
        actors = actors_;
        for (uint256 i; i < actors_.length; ++i) {
            keyOf[actors_[i]] = keys_[i];
        }
        tokens = vault.listedTokens();
        price[tokens[0]] = 1e6; // USDC
        price[tokens[1]] = 3000e6; // WETH
    }

    // ------------------------------------------------------------------ helpers

    function actorCount() external view returns (uint256) {
        return actors.length;
    }

    function periodCount() external view returns (uint256) {
        return ghostPeriods.length;
    }

    function _fail(string memory why) internal {
        ghostBroken = true;
        ghostWhy = why;
    }

    function _value(address t, uint256 x) internal view returns (uint256) {
        return x * price[t] / (10 ** vault.decimalsOf(t));
    }

    /// Net value of `a` in micro-USDC at the model's prices (claims - liabilities), as a signed number.
    function netOf(address a) public view returns (int256 v) {
        for (uint256 i; i < tokens.length; ++i) {
            v += int256(_value(tokens[i], bal[tokens[i]][a])) - int256(_value(tokens[i], debt[tokens[i]][a]));
        }
    }

    /// What the vault holds of `t` for accounts in the model: the most that can leave (claims - liabilities).
    function _liquidity(address t) internal view returns (uint256) {
        uint256 c;
        uint256 l;
        for (uint256 i; i < actors.length; ++i) {
            c += bal[t][actors[i]];
            l += debt[t][actors[i]];
        }
        return c - l;
    }

    function _min(uint256 a, uint256 b) internal pure returns (uint256) {
        return a < b ? a : b;
    }

    function _hasDebt(address a) internal view returns (bool) {
        for (uint256 i; i < tokens.length; ++i) {
            if (debt[tokens[i]][a] != 0) return true;
        }
        return false;
    }

    function committedClaims(uint64 b, address t) public view returns (uint256 s) {
        for (uint256 i; i < actors.length; ++i) {
            s += _sBal[b][t][actors[i]];
        }
    }

    function committedDebt(uint64 b, address t) public view returns (uint256 s) {
        for (uint256 i; i < actors.length; ++i) {
            s += _sDebt[b][t][actors[i]];
        }
    }

    function _amounts(uint64 b, address t, bool liab) internal view returns (uint256[] memory a) {
        a = new uint256[](actors.length);
        for (uint256 i; i < actors.length; ++i) {
            a[i] = liab ? _sDebt[b][t][actors[i]] : _sBal[b][t][actors[i]];
        }
    }

    function _modelAmounts(address t, bool liab) internal view returns (uint256[] memory a) {
        a = new uint256[](actors.length);
        for (uint256 i; i < actors.length; ++i) {
            a[i] = liab ? debt[t][actors[i]] : bal[t][actors[i]];
        }
    }

    function _assetsOfModel() internal view returns (ClearingHouse.AssetState[] memory a) {
        a = new ClearingHouse.AssetState[](tokens.length);
        for (uint256 i; i < tokens.length; ++i) {
            address t = tokens[i];
            TreeBuilder.Tree memory c = TreeBuilder.build(t, actors, _modelAmounts(t, false));
            TreeBuilder.Tree memory l = TreeBuilder.buildLiabilities(t, actors, _modelAmounts(t, true));
            a[i] = ClearingHouse.AssetState(t, c.root(), c.total(), l.root(), l.total(), price[t]);
        }
    }

    function _assetsAt(uint64 b) internal view returns (ClearingHouse.AssetState[] memory a) {
        a = new ClearingHouse.AssetState[](tokens.length);
        for (uint256 i; i < tokens.length; ++i) {
            address t = tokens[i];
            TreeBuilder.Tree memory c = TreeBuilder.build(t, actors, _amounts(b, t, false));
            TreeBuilder.Tree memory l = TreeBuilder.buildLiabilities(t, actors, _amounts(b, t, true));
            a[i] = ClearingHouse.AssetState(t, c.root(), c.total(), l.root(), l.total(), _sPrice[b][t]);
        }
    }

    function _snapshot(uint64 b) internal {
        for (uint256 i; i < tokens.length; ++i) {
            address t = tokens[i];
            for (uint256 j; j < actors.length; ++j) {
                _sBal[b][t][actors[j]] = bal[t][actors[j]];
                _sDebt[b][t][actors[j]] = debt[t][actors[j]];
            }
            _sPrice[b][t] = price[t];
            _sFund[b][t] = fundModel[t];
        }
        _sCredited[b] = creditedUpTo;
    }

    function _restore(uint64 b) internal {
        for (uint256 i; i < tokens.length; ++i) {
            address t = tokens[i];
            for (uint256 j; j < actors.length; ++j) {
                bal[t][actors[j]] = _sBal[b][t][actors[j]];
                debt[t][actors[j]] = _sDebt[b][t][actors[j]];
            }
            price[t] = b == 0 ? price[t] : _sPrice[b][t];
            fundModel[t] = _sFund[b][t];
        }
        creditedUpTo = _sCredited[b];
        for (uint256 k; k < _reqs.length; ++k) {
            if (_reqs[k].servedIn > b) _reqs[k].servedIn = 0;
        }
    }

    function _sign(address who, ClearingHouse.SignedWithdrawal memory w)
        internal
        view
        returns (bytes memory)
    {
        bytes32 d = ch.withdrawalDigest(w.account, w.token, w.amount, w.destination, w.nonce, w.expiry);
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(keyOf[who] == 0 ? thiefKey : keyOf[who], d);
        return abi.encodePacked(r, s, v);
    }

    function _submit(ClearingHouse.Batch memory b, bool honest) internal returns (bool ok) {
        vm.recordLogs();
        vm.prank(operator);
        try ch.submitBatch(b) returns (bytes32 h) {
            ok = true;
            _hash[b.batchId] = h;
        } catch (bytes memory err) {
            if (honest) _fail(string.concat("an honest batch was refused: ", vm.toString(err)));
            return false;
        }
        Vm.Log[] memory logs = vm.getRecordedLogs();
        delete _payouts[b.batchId];
        for (uint256 i; i < logs.length; ++i) {
            if (logs[i].emitter == address(ch) && logs[i].topics[0] == ClearingHouse.PayoutQueued.selector) {
                (, ClearingHouse.Payout memory p) = abi.decode(logs[i].data, (uint256, ClearingHouse.Payout));
                _payouts[b.batchId].push(p);
            }
        }
        delete _ledgers[b.batchId];
        for (uint256 i; i < tokens.length; ++i) {
            _ledgers[b.batchId].push(ch.ledger(tokens[i]));
        }
        acceptedAt[b.batchId] = block.timestamp;
        ghostBatches = b.batchId;
    }

    function _baseBatch() internal view returns (ClearingHouse.Batch memory b) {
        b.batchId = ch.lastBatchId() + 1;
        b.prevBatchHash = ch.lastBatchHash();
        uint48 prevD = ch.lastCreditedDepositId();
        b.lastCreditedDepositId = creditedUpTo;
        b.deposits = new ClearingHouse.DepositRecord[](creditedUpTo - prevD);
        for (uint256 i = prevD; i < creditedUpTo; ++i) {
            Dep memory d = _deps[i];
            b.deposits[i - prevD] = ClearingHouse.DepositRecord(d.account, d.token, d.amount, d.at);
        }
        b.data = abi.encodePacked(bytes4(0x68786431), b.batchId, uint8(tokens.length));
    }

    // ------------------------------------------------------------------ users

    function deposit(uint256 actorSeed, uint256 tokenSeed, uint256 amount) external {
        if (ch.frozen() || vault.paused()) return;
        calls["deposit"]++;
        address who = actors[actorSeed % actors.length];
        address token = tokens[tokenSeed % tokens.length];
        amount = bound(amount, 1, token == tokens[0] ? 1e13 : 1e21);
        TestToken(token).mint(who, amount);
        vm.startPrank(who);
        TestToken(token).approve(address(vault), amount);
        uint48 id = vault.deposit(token, amount, who);
        vm.stopPrank();
        _deps.push(Dep(id, who, token, amount, uint64(block.timestamp)));
    }

    function requestForced(uint256 actorSeed, uint256 tokenSeed, uint256 amount) external {
        if (ch.frozen()) return;
        calls["forced"]++;
        address who = actors[actorSeed % actors.length];
        address token = tokens[tokenSeed % tokens.length];
        amount = bound(amount, 1, 1e21);
        vm.prank(who);
        uint256 id = hatch.requestForcedWithdrawal(token, amount, who);
        _reqs.push(Req(id, who, token, amount, 0));
    }

    function reclaim(uint256 seed) external {
        if (_deps.length == 0) return;
        Dep memory d = _deps[seed % _deps.length];
        if (d.id <= ch.lastCreditedDepositId() || vault.reclaimed(d.id) || d.id <= creditedUpTo) return;
        uint256 due = d.at + ch.depositCreditPeriod();
        if (ch.pausedUntil() > d.at) due += ch.maxPause(); // a pause after the deposit extends it (audit A-3)
        if (!ch.frozen() && block.timestamp < due) return;
        calls["reclaim"]++;
        vm.prank(d.account);
        vault.reclaimDeposit(d.id, d.token, d.amount, d.at, d.account);
        ghostPaidToActors[d.token] += d.amount;
    }

    // ------------------------------------------------------------------ the honest operator

    /// One batch: credit a prefix of the deposits, a trade (USDC value from a to b, possibly into debt), a signed
    /// withdrawal, a fee, a cover, forced serves, maybe a new WETH price.
    function submitBatch(uint256 seed, uint256 creditSeed, uint256 x, uint256 w, uint256 fee, uint256 cover)
        external
    {
        if (ch.frozen() || ch.paused()) return;
        calls["batch"]++;
        uint48 prevD = ch.lastCreditedDepositId();
        uint48 d =
            uint48(bound(creditSeed, creditedUpTo > prevD ? creditedUpTo : prevD, vault.depositCount()));
        for (uint256 i = prevD; i < d; ++i) {
            Dep memory dep = _deps[i];
            if (!vault.reclaimed(dep.id)) _creditTo(dep.token, dep.account, dep.amount);
        }
        creditedUpTo = d;
        _trade(seed, x);
        _maybeReprice(seed);
        ClearingHouse.Batch memory b = _baseBatch();
        b.withdrawals = _maybeWithdraw(seed, w);
        b.insuranceMoves = _fundMoves(seed, fee, cover);
        b.forcedServes = _serveRequests();
        b.assets = _assetsOfModel();
        _fillForcedProofs(b);
        if (_submit(b, true)) {
            _snapshot(b.batchId);
            for (uint256 i; i < b.insuranceMoves.length; ++i) {
                int256 m = b.insuranceMoves[i].amount;
                if (m < 0) ghostFund[b.insuranceMoves[i].token] -= uint256(-m); // a cover leaves the fund at once
            }
        }
        vm.warp(block.timestamp + (seed % 3 hours));
    }

    function _creditTo(address t, address a, uint256 amount) internal {
        uint256 r = debt[t][a] < amount ? debt[t][a] : amount; // a deposit repays debt first
        debt[t][a] -= r;
        bal[t][a] += amount - r;
    }

    function _trade(uint256 seed, uint256 x) internal {
        address from = actors[(seed >> 8) % actors.length];
        address to = actors[(seed >> 16) % actors.length];
        int256 net = netOf(from);
        if (from == to || net <= 0) return;
        address usdc = tokens[0];
        x = bound(x, 0, uint256(net)); // the engine never lets equity go below 0
        if (x == 0) return;
        uint256 fromBal = bal[usdc][from];
        if (fromBal >= x) {
            bal[usdc][from] = fromBal - x;
        } else {
            bal[usdc][from] = 0;
            debt[usdc][from] += x - fromBal;
        }
        _creditTo(usdc, to, x);
    }

    /// A new WETH mark, only if no account goes under water at it (the engine would liquidate first).
    function _maybeReprice(uint256 seed) internal {
        if (seed % 5 != 0) return;
        address weth = tokens[1];
        uint256 old = price[weth];
        price[weth] = bound(seed >> 32, 1000e6, 6000e6);
        for (uint256 i; i < actors.length; ++i) {
            if (netOf(actors[i]) < 0) {
                price[weth] = old;
                return;
            }
        }
    }

    function _maybeWithdraw(uint256 seed, uint256 w)
        internal
        returns (ClearingHouse.SignedWithdrawal[] memory ws)
    {
        ws = new ClearingHouse.SignedWithdrawal[](0);
        address a = actors[(seed >> 24) % actors.length];
        address t = tokens[(seed >> 40) % tokens.length];
        if (_hasDebt(a)) return ws; // keeps every account's net >= 0 trivially
        w = bound(w, 0, _min(bal[t][a], _liquidity(t))); // a USDC claim backed by others' debt waits
        if (w == 0) return ws;
        bal[t][a] -= w;
        ws = new ClearingHouse.SignedWithdrawal[](1);
        ws[0] = ClearingHouse.SignedWithdrawal(a, t, w, a, _nonce[a]++, block.timestamp + 1 days, "");
        ws[0].signature = _sign(a, ws[0]);
    }

    function _fundMoves(uint256 seed, uint256 fee, uint256 cover)
        internal
        returns (ClearingHouse.InsuranceMove[] memory ims)
    {
        ims = new ClearingHouse.InsuranceMove[](0);
        address t = tokens[(seed >> 48) % tokens.length];
        address payer = actors[(seed >> 56) % actors.length];
        fee = _hasDebt(payer) ? 0 : bound(fee, 0, _min(bal[t][payer], _liquidity(t)));
        bal[t][payer] -= fee;
        fundModel[t] += fee;
        address c = actors[(seed >> 64) % actors.length];
        // a cover spends what the fund holds on chain: fees reach it only once their batch is final
        uint256 spendable = fund.expectedBalance(t) < fundModel[t] ? fund.expectedBalance(t) : fundModel[t];
        cover = bound(cover, 0, spendable);
        _creditTo(t, c, cover);
        fundModel[t] -= cover;
        int256 move = int256(fee) - int256(cover);
        if (move == 0) return ims;
        ims = new ClearingHouse.InsuranceMove[](1);
        ims[0] = ClearingHouse.InsuranceMove(t, move);
    }

    /// Serve every open request of an account without debt: in full, or all it has (then its leaf is 0).
    function _serveRequests() internal returns (ClearingHouse.ForcedServe[] memory s) {
        uint256 n;
        for (uint256 k; k < _reqs.length; ++k) {
            if (_servable(_reqs[k])) ++n;
        }
        s = new ClearingHouse.ForcedServe[](n);
        n = 0;
        for (uint256 k; k < _reqs.length; ++k) {
            Req storage r = _reqs[k];
            if (!_servable(r)) continue;
            uint256 amount = _min(bal[r.token][r.account], r.amount);
            bal[r.token][r.account] -= amount;
            r.servedIn = ch.lastBatchId() + 1;
            s[n++] = ClearingHouse.ForcedServe(r.id, amount, 0, new SumTree.Node[](0));
        }
    }

    function _servable(Req storage r) internal view returns (bool) {
        if (r.servedIn != 0 || _hasDebt(r.account)) return false;
        // serves debit the model as they are chosen, so _liquidity already reflects earlier ones
        if (_min(bal[r.token][r.account], r.amount) > _liquidity(r.token)) return false; // not enough of the token
        (,, bool cancelled,,,,,,,) = hatch.forcedRequest(r.id);
        return !cancelled;
    }

    function _fillForcedProofs(ClearingHouse.Batch memory b) internal view {
        for (uint256 j; j < b.forcedServes.length; ++j) {
            ClearingHouse.ForcedServe memory s = b.forcedServes[j];
            for (uint256 k; k < _reqs.length; ++k) {
                if (_reqs[k].id != s.requestId) continue;
                uint256 leaf;
                for (uint256 i; i < actors.length; ++i) {
                    if (actors[i] == _reqs[k].account) leaf = i;
                }
                if (s.amount < _reqs[k].amount) {
                    s.leafIndex = leaf;
                    s.proof = TreeBuilder.build(_reqs[k].token, actors, _modelAmounts(_reqs[k].token, false))
                        .proof(leaf);
                }
            }
        }
    }

    // ------------------------------------------------------------------ the thief with the operator key

    /// The thief tries to pay an account's balance to itself: a signature of its own key for the account's
    /// withdrawal, or the account's real signature redirected. Both must be refused.
    function rogueWithdraw(uint256 seed) external {
        if (ch.frozen() || ch.paused() || ghostBatches == 0) return;
        calls["rogue"]++;
        address victim = actors[seed % actors.length];
        address t = tokens[(seed >> 8) % tokens.length];
        uint256 amount = bal[t][victim];
        if (amount == 0) return;
        bal[t][victim] = 0;
        ClearingHouse.Batch memory b = _baseBatch();
        b.assets = _assetsOfModel();
        bal[t][victim] = amount;
        b.withdrawals = new ClearingHouse.SignedWithdrawal[](1);
        b.withdrawals[0] =
            ClearingHouse.SignedWithdrawal(victim, t, amount, thief, (seed >> 8) + 1e9, block.timestamp, "");
        if (seed % 2 == 0) {
            b.withdrawals[0].signature = _sign(thief, b.withdrawals[0]); // the thief's key for the victim's funds
        } else {
            b.withdrawals[0].destination = victim; // the victim's real signature, redirected to the thief
            b.withdrawals[0].signature = _sign(victim, b.withdrawals[0]);
            b.withdrawals[0].destination = thief;
        }
        vm.prank(operator);
        try ch.submitBatch(b) {
            _fail("a batch paying an account's balance to the thief was accepted");
        } catch {}
    }

    /// The thief moves an account's balance into its own leaf and withdraws it with its own signature: the batch
    /// is solvent and accepted, and a watcher voids it inside its window. Nothing may ever reach the thief.
    function rogueReassign(uint256 seed) external {
        if (ch.frozen() || ch.paused() || ghostBatches == 0) return;
        address victim = actors[seed % actors.length];
        address t = tokens[(seed >> 8) % tokens.length];
        uint256 amount = bal[t][victim];
        if (amount == 0) return;
        calls["rogueReassign"]++;
        uint64 before = ch.lastBatchId();
        bal[t][victim] = 0; // the thief's tree: the victim's balance is gone ...
        ClearingHouse.Batch memory b = _baseBatch();
        b.assets = _assetsOfModel();
        bal[t][victim] = amount;
        b.deposits = new ClearingHouse.DepositRecord[](0); // ... and it credits nothing new
        b.lastCreditedDepositId = ch.lastCreditedDepositId();
        b.withdrawals = new ClearingHouse.SignedWithdrawal[](1);
        b.withdrawals[0] =
            ClearingHouse.SignedWithdrawal(thief, t, amount, thief, seed, block.timestamp + 1, "");
        b.withdrawals[0].signature = _sign(thief, b.withdrawals[0]);
        vm.prank(operator);
        try ch.submitBatch(b) {
            vm.warp(block.timestamp + (seed % ch.disputeWindow()));
            vm.prank(watcher);
            ch.challengeBatch(before + 1, _hash[before], _ledgers[before]);
        } catch {}
        if (ch.lastBatchId() != before) _fail("the thief's batch survived");
    }

    // ------------------------------------------------------------------ payouts, challenges, time

    function executePayouts(uint256 seed, uint256 count) external {
        uint64 head = ch.lastBatchId();
        if (head == 0) return;
        uint64 b = uint64(1 + seed % head);
        ClearingHouse.Payout[] memory p = _payouts[b];
        (,,,,,, uint32 done) = ch.batchRecord(b);
        if (p.length == 0 || done >= p.length || !ch.isFinal(b)) return;
        if (!ch.frozen() && ch.paused()) return;
        count = bound(count, 1, p.length - done);
        bool frozen = ch.frozen();
        uint256 period = block.timestamp / ch.outflowPeriod();
        calls["execute"]++;
        uint256 partBefore = ch.payoutPartPaid(b);
        try ch.executePayouts(b, p, count) {
            // what moved: payouts done..after in full (less what an earlier part paid of the first), then the
            // part paid of the one it stopped at (a payout above the whole cap goes in parts: audit A-2)
            (,,,,,, uint32 after_) = ch.batchRecord(b);
            if (after_ < done) _fail("payouts went backwards");
            uint256 partAfter = ch.payoutPartPaid(b);
            for (uint256 k = done; k <= after_ && k < p.length; ++k) {
                uint256 moved = (k < after_ ? p[k].amount : partAfter) - (k == done ? partBefore : 0);
                if (moved == 0) continue;
                if (p[k].kind == 2) {
                    ghostFund[p[k].token] += moved;
                    continue;
                }
                ghostPaidToActors[p[k].token] += moved;
                if (!frozen) {
                    if (ghostCappedOut[p[k].token][period] == 0) ghostPeriods.push(period);
                    ghostCappedOut[p[k].token][period] += moved;
                }
            }
            if (partAfter != 0) calls["execute part"]++;
        } catch (bytes memory err) {
            if (bytes4(err) != ClearingHouse.OutflowCapExceeded.selector) {
                _fail("a payout failed other than by cap");
            }
        }
    }

    /// A watcher (or the guardian) voids a random young batch; the engine rolls back with it.
    function challenge(uint256 seed, bool byGuardian) external {
        uint64 head = ch.lastBatchId();
        if (ch.frozen() || head == 0) return;
        uint64 v = uint64(1 + seed % head);
        if (ch.isFinal(v)) return;
        calls["challenge"]++;
        vm.prank(byGuardian ? guardian : watcher);
        ch.challengeBatch(v, _hash[v - 1], _ledgers[v - 1]);
        _restore(v - 1);
        for (uint64 k = v; k <= head; ++k) {
            delete _payouts[k];
        }
        ghostBatches = v - 1;
        for (uint256 i; i < tokens.length; ++i) {
            ghostFund[tokens[i]] = fund.expectedBalance(tokens[i]); // returned covers went back to the fund
        }
    }

    function warpAndMaybeFreeze(uint256 secs, bool tryFreeze) external {
        calls["warp"]++;
        vm.warp(block.timestamp + bound(secs, 1, 2 days));
        if (!tryFreeze || ch.frozen()) return;
        uint64 e = _lastFinal();
        if (block.timestamp >= uint256(ch.lastBatchAt()) + ch.freezePeriod()) {
            ch.freeze(e);
            calls["freeze"]++;
            return;
        }
        for (uint256 k; k < _reqs.length; ++k) {
            if (hatch.isForcedRequestSettled(_reqs[k].id)) continue;
            (, uint64 at,,,,,,,,) = hatch.forcedRequest(_reqs[k].id);
            if (block.timestamp >= at + ch.forcedWithdrawalPeriod()) {
                hatch.freezeForUnservedRequest(_reqs[k].id, e);
                calls["freezeForced"]++;
                return;
            }
        }
        try ch.freeze(e) {
            _fail("froze a live exchange");
        } catch {}
    }

    function _lastFinal() internal view returns (uint64 e) {
        e = ch.lastBatchId();
        while (e > 0 && !ch.isFinal(e)) --e;
    }

    function guardianActs(uint256 seed) external {
        calls["guardian"]++;
        vm.startPrank(guardian);
        if (seed % 2 == 0 && !ch.paused() && block.timestamp >= ch.pauseCooldownEnds()) ch.pause();
        if (seed % 3 == 0 && !vault.paused() && block.timestamp >= vault.pauseCooldownEnds()) vault.pause();
        address token = tokens[seed % tokens.length];
        try vault.transferOut(token, guardian, 1) {
            _fail("guardian moved funds");
        } catch {}
        try vault.payout(guardian, token, 1) {
            _fail("guardian moved funds");
        } catch {}
        try fund.withdraw(token, guardian, 1) {
            _fail("guardian moved funds");
        } catch {}
        try ch.grantRole(ch.OPERATOR_ROLE(), guardian) {
            _fail("guardian gained a role");
        } catch {}
        try ch.setOutflowCap(token, type(uint256).max) {
            _fail("guardian set a cap");
        } catch {}
        vm.stopPrank();
    }

    // ------------------------------------------------------------------ escape

    function escape(uint256 actorSeed) external {
        if (!ch.frozen() || ch.escapeBatchId() == 0) return;
        address who = actors[actorSeed % actors.length];
        uint64 e = ch.escapeBatchId();
        (EscapeHatch.LeafProof[] memory c, EscapeHatch.LeafProof[] memory l) = _proofsAt(e, who);
        ClearingHouse.AssetState[] memory a = _assetsAt(e);
        uint256[] memory before = new uint256[](tokens.length);
        for (uint256 i; i < tokens.length; ++i) {
            before[i] = TestToken(tokens[i]).balanceOf(who);
        }
        vm.prank(who);
        try hatch.escape(a, c, l, who) {
            calls["escape"]++;
            ghostEscapeCount[who] += 1;
        } catch {
            if (!hatch.escaped(who)) _fail("an honest exit reverted");
            return;
        }
        for (uint256 i; i < tokens.length; ++i) {
            uint256 got = TestToken(tokens[i]).balanceOf(who) - before[i];
            ghostEscaped[tokens[i]] += got;
            ghostEscapedBy[tokens[i]][who] += got;
            ghostPaidToActors[tokens[i]] += got;
        }
        for (uint256 i; i < tokens.length; ++i) {
            if (a[i].liabilitiesTotal != 0) ghostBasket = true;
        }
    }

    function _proofsAt(uint64 e, address who)
        internal
        view
        returns (EscapeHatch.LeafProof[] memory c, EscapeHatch.LeafProof[] memory l)
    {
        uint256 leaf;
        for (uint256 i; i < actors.length; ++i) {
            if (actors[i] == who) leaf = i;
        }
        c = new EscapeHatch.LeafProof[](tokens.length);
        l = new EscapeHatch.LeafProof[](tokens.length);
        for (uint256 i; i < tokens.length; ++i) {
            address t = tokens[i];
            c[i] = EscapeHatch.LeafProof(
                _sBal[e][t][who], leaf, TreeBuilder.build(t, actors, _amounts(e, t, false)).proof(leaf)
            );
            l[i] = EscapeHatch.LeafProof(
                _sDebt[e][t][who],
                leaf,
                TreeBuilder.buildLiabilities(t, actors, _amounts(e, t, true)).proof(leaf)
            );
        }
    }

    /// Forged exits: an inflated claim, a hidden debt, another account's leaf. All must fail.
    function forgeEscape(uint256 actorSeed, uint256 extra, uint8 how) external {
        if (!ch.frozen() || ch.escapeBatchId() == 0) return;
        calls["forge"]++;
        address who = actors[actorSeed % actors.length];
        uint64 e = ch.escapeBatchId();
        (EscapeHatch.LeafProof[] memory c, EscapeHatch.LeafProof[] memory l) = _proofsAt(e, who);
        ClearingHouse.AssetState[] memory a = _assetsAt(e);
        address caller = who;
        how = how % 3;
        if (how == 0) {
            c[extra % c.length].amount += bound(extra, 1, 1e24);
        } else if (how == 1) {
            if (l[0].amount == 0) return;
            l[0].amount = 0;
        } else {
            caller = actors[(actorSeed + 1) % actors.length];
            if (_sBal[e][tokens[0]][caller] == c[0].amount && _sBal[e][tokens[1]][caller] == c[1].amount) {
                return;
            }
        }
        vm.prank(caller);
        try hatch.escape(a, c, l, caller) {
            _fail("a forged exit succeeded");
        } catch {}
    }

    /// Net value of `a` at batch `e` (claims rounded down, liabilities up), micro-USDC * 1e18.
    function committedNet(uint64 e, address a) public view returns (uint256 owed, uint256 owes) {
        for (uint256 i; i < tokens.length; ++i) {
            address t = tokens[i];
            uint256 unit = 10 ** vault.decimalsOf(t);
            owed += _sBal[e][t][a] * _sPrice[e][t] * 1e18 / unit;
            owes += (_sDebt[e][t][a] * _sPrice[e][t] * 1e18 + unit - 1) / unit;
        }
    }

    function committedPrice(uint64 e, address t) external view returns (uint256) {
        return _sPrice[e][t];
    }

    function committedLeaf(uint64 e, address t, address a) external view returns (uint256) {
        return _sBal[e][t][a];
    }
}
